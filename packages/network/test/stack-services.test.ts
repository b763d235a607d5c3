import dgram from "node:dgram";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ipToString } from "../src/index.js";
import { harnessUnavailable, startGuest } from "./harness.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP stack-services harness tests: ${skip}`);
const guestScript = (name: string) => fileURLToPath(new URL(`./guest/${name}`, import.meta.url));

describe.skipIf(skip)("gateway services and UDP relay, real guest", () => {
  let echo: dgram.Socket;
  let env: Awaited<ReturnType<typeof startGuest>>;
  let gw: string;
  let pcapPath: string;

  beforeAll(async () => {
    echo = dgram.createSocket("udp4");
    echo.on("message", (m, r) => echo.send(m, r.port, r.address));
    await new Promise<void>((r) => echo.bind(0, "127.0.0.1", () => r()));
    pcapPath = join(tmpdir(), `iii-net-${process.pid}-trace.pcap`);
    env = await startGuest({ policy: { hostPorts: [echo.address().port] }, pcapPath });
    gw = ipToString(env.stack.addresses.gatewayIp);
  });
  afterAll(async () => {
    await env?.close();
    echo?.close();
    rmSync(pcapPath, { force: true });
  });

  test("ICMP echo to the gateway is answered", async () => {
    const r = await env.guest.sh(`busybox ping -c 3 -W 1 ${gw}`);
    expect(r.stdout).toContain("3 packets received");
  });

  test("DHCP: udhcpc gets the slot's address, router, DNS server and MTU", async () => {
    const script = join(env.guest.dir, "udhcpc.sh");
    const out = join(env.guest.dir, "lease.txt");
    await env.guest.sh(`printf '#!/bin/sh\\n[ "$1" = bound ] && echo "ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu" > ${out}\\nexit 0\\n' > ${script}; chmod +x ${script}`);
    const tap = env.guest.tap;
    const r = await env.guest.sh(`busybox udhcpc -i ${tap} -n -q -f -t 3 -T 1 -O mtu -s ${script}`, { timeoutMs: 15_000 });
    expect(r.code).toBe(0);
    expect(readFileSync(out, "utf8").trim()).toBe(`ip=${ipToString(env.stack.addresses.guestIp)} mask=30 router=${gw} dns=${gw} mtu=1500`);
  });

  test("UDP to an allowed host loopback port is relayed both ways", async () => {
    const r = await env.guest.exec([process.execPath, guestScript("udp-echo.mjs"), gw, String(echo.address().port), "512"]);
    expect(JSON.parse(r.stdout)).toEqual({ length: 512, same: true });
    expect(env.stack.snapshot().some((f) => f.protocol === "udp" && f.bytesToGuest === 512)).toBe(true);
  });

  test("a UDP reply larger than the MTU arrives as IPv4 fragments, intact", async () => {
    const r = await env.guest.exec([process.execPath, guestScript("udp-echo.mjs"), gw, String(echo.address().port), "6000"]);
    expect(JSON.parse(r.stdout)).toEqual({ length: 6000, same: true });
  });

  test("counters and drops are observable; the pcap holds the frames; no internal error", () => {
    const c = env.stack.counters;
    expect(c.framesIn).toBeGreaterThan(0);
    expect(c.framesOut).toBeGreaterThan(0);
    expect(c.udpOpened).toBeGreaterThanOrEqual(1);
    expect(c.drops["internal-error"]).toBeUndefined();
    const pcap = readFileSync(pcapPath);
    expect(pcap.readUInt32LE(0)).toBe(0xa1b2c3d4);
    expect(pcap.readUInt32LE(20)).toBe(1); // LINKTYPE_ETHERNET
    expect(pcap.length).toBeGreaterThan(24 + 16 * 10);
  });
});
