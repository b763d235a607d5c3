// A guest flooding UDP must not make the relay queue datagrams without bound when the host cannot send them as fast
// (an uplink slower than the VM link). The slow uplink here: a veth pair into a namespace the test makes, whose host
// end has a 10 Mbit/s token-bucket qdisc.
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { parseIp } from "../src/index.js";
import { ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT } from "../src/wire/icmp.js";
import { harnessUnavailable } from "./harness.js";
import { hostileStack, sleep } from "./hostile-stack.js";

const MiB = 1024 * 1024;
const skip = harnessUnavailable() ?? (spawnSync("tc", ["-V"], { stdio: "ignore" }).status === 0 ? undefined : "tc is missing");
if (skip) console.warn(`SKIP UDP slow-uplink test: ${skip}`);

const ns = `iiiudp-${process.pid}`;
const hostEnd = `iuh${process.pid % 100000}`;
const nsEnd = `iug${process.pid % 100000}`;
const subnet = `10.253.${process.pid % 250}`;
const peer = `${subnet}.2`;

function sh(args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${args.join(" ")}: ${r.stderr}`);
}

function removeUplink(): void {
  spawnSync("ip", ["link", "del", hostEnd], { stdio: "ignore" });
  spawnSync("ip", ["netns", "del", ns], { stdio: "ignore" });
}

describe.skipIf(skip)("UDP relay toward a slow uplink", () => {
  beforeAll(() => {
    process.once("exit", removeUplink);
    sh(["ip", "netns", "add", ns]);
    sh(["ip", "link", "add", hostEnd, "type", "veth", "peer", "name", nsEnd]);
    sh(["ip", "link", "set", nsEnd, "netns", ns]);
    sh(["ip", "addr", "add", `${subnet}.1/30`, "dev", hostEnd]);
    sh(["ip", "link", "set", hostEnd, "up"]);
    sh(["ip", "netns", "exec", ns, "ip", "addr", "add", `${peer}/30`, "dev", nsEnd]);
    sh(["ip", "netns", "exec", ns, "ip", "link", "set", nsEnd, "up"]);
    // The qdisc holds more than the socket's send buffer, so the socket fills (EAGAIN) before the qdisc drops.
    sh(["tc", "qdisc", "add", "dev", hostEnd, "root", "tbf", "rate", "10mbit", "burst", "32kbit", "limit", "1mb"]);
  });
  afterAll(removeUplink);

  test("hostile: 84 MB of guest datagrams toward a 10 Mbit/s link hold a few MiB, the rest is dropped and counted", async () => {
    const env = await hostileStack({ policy: { rules: [{ action: "allow", cidr: `${peer}/32` }] } });
    try {
      const frame = env.g.udp(parseIp(peer)!, 40000, 9999, Buffer.alloc(1400, 1));
      global.gc?.();
      const before = process.memoryUsage().arrayBuffers;
      for (let i = 0; i < 60_000; i++) {
        env.stack.injectFrame(frame);
        if (i % 5000 === 4999) await sleep(0);
      }
      const grew = process.memoryUsage().arrayBuffers - before;
      const dropped = env.stack.counters.drops["udp-send-backpressure"] ?? 0;
      console.log(`60000 x 1400 B toward 10 Mbit/s: arrayBuffers +${(grew / MiB).toFixed(1)} MiB, ${dropped} dropped`);
      // Unbounded this was +80 MiB (all of it queued in libuv); the relay keeps at most 4 MiB unsent.
      expect(grew).toBeLessThan(24 * MiB);
      expect(dropped).toBeGreaterThan(40_000);
    } finally {
      await env.close();
    }
  });
});

describe("UDP to port 0", () => {
  test("hostile: refused with ICMP port unreachable, no flow, no exception per frame", async () => {
    const lines: string[] = [];
    // 127.0.0.1 opened by an allow rule (no host-address deny in the way): the relay would dial it, port 0.
    const env = await hostileStack({
      log: (l) => lines.push(l),
      policy: { rules: [{ action: "allow", cidr: "127.0.0.1/32" }], hostAddresses: () => [] },
    });
    const icmp: Array<[number, number]> = [];
    env.onFrame((f) => {
      if (f.length >= 36 && f[23] === 1) icmp.push([f[34]!, f[35]!]);
    });
    try {
      for (let i = 0; i < 100; i++) env.stack.injectFrame(env.g.udp(parseIp("127.0.0.1")!, 40000, 0, Buffer.from("x")));
      await sleep(50);
      // Before: dgram.send threw for each frame, logged as an internal error with its stack; a flow and socket stayed.
      expect(env.stack.counters.drops["internal-error"]).toBeUndefined();
      expect(env.stack.counters.drops["udp-port-zero"]).toBe(100);
      expect(env.stack.snapshot()).toHaveLength(0);
      expect(lines.filter((l) => l.includes("internal error"))).toHaveLength(0);
      expect(icmp.length).toBe(100);
      expect(icmp[0]).toEqual([ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT]);
    } finally {
      await env.close();
    }
  });
});
