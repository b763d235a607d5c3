import { describe, expect, test } from "vitest";
import { Ipv4Reassembler } from "./ipv4-reassembly.js";

describe("Ipv4Reassembler", () => {
  const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => i & 0xff));
  test("reassembles out-of-order and overlapping fragments", () => {
    const r = new Ipv4Reassembler();
    expect(r.add(1, 2, 17, 9, 2960, false, data.subarray(2960))).toBe("pending");
    expect(r.add(1, 2, 17, 9, 0, true, data.subarray(0, 1480))).toBe("pending");
    expect(r.add(1, 2, 17, 9, 1400, true, data.subarray(1400, 2960))).toEqual(data);
    expect(r.inProgress).toBe(0);
  });
  test("bounded: too many datagrams, oversize and stale ones are dropped", () => {
    let now = 0;
    const r = new Ipv4Reassembler(2, 1000, () => now);
    r.add(1, 2, 17, 1, 0, true, data.subarray(0, 8));
    r.add(1, 2, 17, 2, 0, true, data.subarray(0, 8));
    expect(r.add(1, 2, 17, 3, 0, true, data.subarray(0, 8))).toBe("dropped");
    expect(r.add(1, 2, 17, 1, 65528, false, data.subarray(0, 100))).toBe("dropped");
    now = 2000;
    expect(r.add(1, 2, 17, 4, 0, true, data.subarray(0, 8))).toBe("pending");
    expect(r.inProgress).toBe(1);
  });
  test("a guest resending one fragment cannot grow a datagram past 64 KiB or 256 parts", () => {
    const r = new Ipv4Reassembler();
    let result: ReturnType<Ipv4Reassembler["add"]> = "pending";
    let sent = 0;
    while (result === "pending" && sent < 10_000) {
      result = r.add(1, 2, 17, 7, 0, true, data.subarray(0, 1480));
      sent++;
    }
    expect(result).toBe("dropped");
    expect(sent).toBeLessThanOrEqual(45);
    expect(r.inProgress).toBe(0);
    let parts = 0;
    result = "pending";
    while (result === "pending" && parts < 10_000) result = r.add(1, 2, 17, 8, 8 * (parts++ % 100), true, data.subarray(0, 8));
    expect(result).toBe("dropped");
    expect(parts).toBe(257);
  });
});
