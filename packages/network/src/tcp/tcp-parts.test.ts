import { describe, expect, test } from "vitest";
import { CongestionControl } from "./congestion.js";
import { Reassembly } from "./reassembly.js";
import { RttEstimator } from "./rtt-estimator.js";
import { SendBuffer } from "./send-buffer.js";

describe("SendBuffer", () => {
  test("reads at any offset after any acknowledgment match the byte stream (cursor reuse and compaction)", () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const b = new SendBuffer();
    const stream: number[] = [];
    let una = 0;
    let next = 0;
    for (let round = 0; round < 3000; round++) {
      const op = rnd(10);
      if (op < 4) {
        const chunk = Buffer.from(Array.from({ length: 1 + rnd(300) }, () => rnd(256)));
        stream.push(...chunk);
        b.push(chunk);
      } else if (op < 8) {
        const avail = stream.length - next;
        if (avail <= 0) continue;
        const len = 1 + rnd(Math.min(avail, 500));
        const dst = Buffer.alloc(len + 3);
        b.copy(next - una, len, dst, 3);
        expect(dst.subarray(3)).toEqual(Buffer.from(stream.slice(next, next + len)));
        next += len;
      } else if (op === 8) {
        const n = rnd(next - una + 1);
        b.consume(n);
        una += n;
      } else {
        next = una + rnd(next - una + 1); // go-back-N rewind
      }
      expect(b.length).toBe(stream.length - una);
    }
  });

  test("reading past the end is an error, not garbage", () => {
    const b = new SendBuffer();
    b.push(Buffer.from("abc"));
    expect(() => b.copy(1, 5, Buffer.alloc(5), 0)).toThrow("underrun");
  });
});

describe("RttEstimator (RFC 6298)", () => {
  test("first sample sets RTO = SRTT + 4·RTTVAR within the bounds; backoff doubles up to the ceiling; Karn's rule", () => {
    const r = new RttEstimator({ minRtoMs: 200, maxRtoMs: 1000 });
    expect(r.rto).toBe(1000);
    r.sent(100, 10, 0);
    r.acked(105, 50); // does not cover the timed segment
    r.acked(110, 80);
    expect(r.rto).toBe(240); // 80 + 4·40
    r.sent(200, 10, 100);
    r.cancel();
    r.acked(300, 5000);
    expect(r.rto).toBe(240);
    r.backoff();
    r.backoff();
    r.backoff();
    expect(r.rto).toBe(1000);
  });
});

describe("CongestionControl (RFC 5681)", () => {
  test("slow start, congestion avoidance, fast retransmit on the third duplicate, timeout to one segment", () => {
    const c = new CongestionControl(1000);
    expect(c.cwnd).toBe(10_000);
    c.acked(1000, 1000);
    expect(c.cwnd).toBe(11_000);
    expect([c.duplicateAck(), c.duplicateAck(), c.duplicateAck()]).toEqual([false, false, true]);
    c.fastRetransmit(20_000, 1000);
    expect([c.ssthresh, c.cwnd]).toEqual([10_000, 13_000]);
    c.acked(1000, 1000);
    expect(c.cwnd).toBe(13_000 + Math.floor(1_000_000 / 13_000));
    c.timeout(8000, 1000);
    expect([c.ssthresh, c.cwnd]).toEqual([4000, 1000]);
  });
});

describe("Reassembly", () => {
  test("keeps out-of-order data inside the room, drains it in order, reports SACK blocks latest first", () => {
    const r = new Reassembly(100);
    expect(r.insert(20, Buffer.from("cccc"), 50)).toBe(true);
    expect(r.insert(10, Buffer.from("bbbb"), 50)).toBe(true);
    expect(r.insert(30, Buffer.alloc(10), 0)).toBe(false); // beyond the window
    expect(r.insert(30, Buffer.alloc(200), 300)).toBe(false); // beyond the byte budget
    expect(r.sackBlocks()).toEqual([
      [10, 14],
      [20, 24],
    ]);
    const got: string[] = [];
    expect(r.drain(8, (d) => got.push(d.toString()))).toBe(8);
    expect(r.drain(12, (d) => got.push(d.toString()))).toBe(14);
    expect(got).toEqual(["bb"]);
    expect(r.sackBlocks()).toEqual([[20, 24]]);
    r.clear();
    expect(r.empty).toBe(true);
  });
});
