import { describe, expect, test } from "vitest";
import { ConnectionTracker } from "./connection-tracker.js";

describe("ConnectionTracker", () => {
  test("limits per protocol, idle detection and snapshots with age and idle time", () => {
    let now = 1000;
    const t = new ConnectionTracker({ maxTcpFlows: 2, maxUdpFlows: 1 }, () => now);
    const base = { direction: "outbound" as const, guestIp: "100.96.0.2", guestPort: 1, remoteIp: "1.1.1.1", remotePort: 443, state: "ESTABLISHED" };
    const a = t.open({ ...base, protocol: "tcp" });
    t.open({ ...base, protocol: "tcp", guestPort: 2 });
    expect(t.canOpen("tcp")).toBe(false);
    expect(t.canOpen("udp")).toBe(true);
    const u = t.open({ ...base, protocol: "udp" });
    expect(t.canOpen("udp")).toBe(false);
    now = 5000;
    t.touch(a);
    a.bytesFromGuest = 10;
    expect(t.idle("tcp", 2000).map((e) => e.guestPort)).toEqual([2]);
    const snap = t.snapshot().find((e) => e.id === a.id)!;
    expect(snap).toMatchObject({ ageMs: 4000, idleMs: 0, bytesFromGuest: 10, protocol: "tcp" });
    t.close(u);
    t.close(u);
    expect(t.count("udp")).toBe(0);
    expect(t.size).toBe(2);
  });
});
