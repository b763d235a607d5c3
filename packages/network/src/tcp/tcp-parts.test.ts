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
    // Each segment is charged 256 bytes on top of its payload.
    const r = new Reassembly(1000);
    expect(r.insert(20, Buffer.from("cccc"), 50)).toBe(true);
    expect(r.insert(10, Buffer.from("bbbb"), 50)).toBe(true);
    expect(r.insert(30, Buffer.alloc(10), 0)).toBe(false); // beyond the window
    expect(r.insert(30, Buffer.alloc(300), 300)).toBe(false); // beyond the byte budget
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

  test("SACK blocks come from merged ranges: overlapping and adjacent segments make one block", () => {
    const r = new Reassembly(1 << 20);
    r.insert(100, Buffer.alloc(10), 1000); // [100,110)
    r.insert(120, Buffer.alloc(10), 1000); // [120,130)
    r.insert(140, Buffer.alloc(10), 1000); // [140,150)
    r.insert(160, Buffer.alloc(10), 1000); // [160,170)
    r.insert(105, Buffer.alloc(15), 1000); // joins [100,130): overlaps the first, touches the second
    expect(r.sackBlocks()).toEqual([
      [100, 130],
      [160, 170],
      [140, 150],
    ]);
    r.insert(150, Buffer.alloc(10), 1000); // joins [140,170)
    expect(r.sackBlocks()).toEqual([
      [140, 170],
      [100, 130],
    ]);
    r.insert(100, Buffer.alloc(40), 1000); // a longer segment at a queued seq: one range [100,170)
    expect(r.sackBlocks()).toEqual([[100, 170]]);
    const got: number[] = [];
    expect(r.drain(100, (d) => got.push(d.length))).toBe(170);
    expect(got.reduce((a, b) => a + b, 0)).toBe(70);
    expect(r.sackBlocks()).toBeUndefined();
    // Across the 2^32 wrap.
    r.insert(0xfffffff0, Buffer.alloc(0x20), 1000);
    r.insert(0x20, Buffer.alloc(8), 1000);
    expect(r.sackBlocks()).toEqual([
      [0x20, 0x28],
      [0xfffffff0, 0x10],
    ]);
    // A segment delivered in order past queued ones trims them away.
    expect(r.drain(0x24, () => {})).toBe(0x28);
    expect(r.sackBlocks()).toBeUndefined();
  });

  test("hostile: 1-byte segments are charged their overhead, so the byte bound also bounds their number", () => {
    const r = new Reassembly(64 * 1024);
    let kept = 0;
    for (let i = 0; i < 4096; i++) if (r.insert(2 * i, Buffer.from([1]), 1 << 20)) kept++;
    // (256 + 1) bytes each: 255 fit in 64 KiB (before: all 4096).
    expect(kept).toBe(255);
    expect(r.sackBlocks()).toHaveLength(3);
  });
});
