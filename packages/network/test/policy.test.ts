import net from "node:net";
import { networkInterfaces } from "node:os";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type DenialEvent, ipToString } from "../src/index.js";
import { startDnsmasq } from "./dns-server.js";
import { harnessUnavailable, startGuest } from "./harness.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP policy harness tests: ${skip}`);
const guestScript = (name: string) => fileURLToPath(new URL(`./guest/${name}`, import.meta.url));

async function listen(host: string): Promise<net.Server> {
  const s = net.createServer((sock) => {
    sock.on("error", () => {});
    sock.end("hello\n");
  });
  await new Promise<void>((r) => s.listen(0, host, () => r()));
  return s;
}
const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port;

describe.skipIf(skip)("egress policy from a real guest", () => {
  let engine: net.Server;
  let other: net.Server;
  let env: Awaited<ReturnType<typeof startGuest>>;
  let gw: string;
  const denials: DenialEvent[] = [];

  beforeAll(async () => {
    engine = await listen("127.0.0.1");
    other = await listen("127.0.0.1");
    env = await startGuest({ policy: { hostPorts: [portOf(engine)] } });
    env.stack.on("denied", (d) => denials.push(d));
    gw = ipToString(env.stack.addresses.gatewayIp);
  });
  afterAll(async () => {
    await env?.close();
    engine?.close();
    other?.close();
  });

  const probe = async (host: string, port: number) => {
    const r = await env.guest.exec([process.execPath, guestScript("connect-probe.mjs"), host, String(port), "5000"]);
    return JSON.parse(r.stdout.trim()) as { outcome: string; code?: string; ms: number };
  };

  test("the allowed engine port on the host loopback works through the gateway", async () => {
    const r = await env.guest.sh(`nc -N ${gw} ${portOf(engine)} </dev/null`);
    expect(r.stdout).toBe("hello\n");
  });

  test("a host loopback port that is not allowed is refused (RST) and logged", async () => {
    expect(await probe(gw, portOf(other))).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect(env.logs.some((l) => l.includes(`-> ${gw}:${portOf(other)} by builtin:host-port-not-allowed`))).toBe(true);
  });

  test("169.254.169.254 (metadata) is refused and logged", async () => {
    expect(await probe("169.254.169.254", 80)).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect(env.logs.some((l) => l.includes("-> 169.254.169.254:80 by builtin:link-local-metadata"))).toBe(true);
  });

  test("a private address is refused and logged", async () => {
    expect(await probe("10.1.2.3", 443)).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect(await probe("192.168.1.1", 22)).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect(env.logs.some((l) => l.includes("-> 10.1.2.3:443 by default:private-range"))).toBe(true);
    expect(denials.map((d) => d.error.code)).toContain("PolicyDenied");
  });

  test("a denied UDP flow gets ICMP unreachable and a log line", async () => {
    const r = await env.guest.exec([process.execPath, guestScript("udp-probe.mjs"), "169.254.169.254", "123"]);
    const out = JSON.parse(r.stdout.trim()) as { replies: string[]; error: string | null };
    expect(out.replies).toEqual([]);
    expect(["EHOSTUNREACH", "ECONNREFUSED"]).toContain(out.error);
    expect(env.logs.some((l) => l.includes("denied udp") && l.includes("169.254.169.254:123 by builtin:link-local-metadata"))).toBe(true);
  });
});

const hostIp = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === "IPv4" && !a.internal)?.address;

describe.skipIf(skip)("domain rules bind exactly the resolved IPs", () => {
  let dns: Awaited<ReturnType<typeof startDnsmasq>>;
  let server: net.Server;
  let env: Awaited<ReturnType<typeof startGuest>>;
  let gw: string;

  beforeAll(async () => {
    if (!hostIp) throw new Error("this test needs a non-loopback IPv4 address on the host");
    server = await listen("0.0.0.0");
    dns = await startDnsmasq([`--host-record=allowed.test,${hostIp}`, `--host-record=other.test,${hostIp}`]);
    env = await startGuest({
      dns: { upstreams: [dns.address] },
      policy: { defaultAction: "deny", rules: [{ action: "allow", domain: "allowed.test", protocol: "tcp" }] },
      limits: { connectTimeoutMs: 2000 },
    });
    gw = ipToString(env.stack.addresses.gatewayIp);
  });
  afterAll(async () => {
    await env?.close();
    await dns?.close();
    server?.close();
  });

  const probe = async (host: string) => {
    const r = await env.guest.exec([process.execPath, guestScript("connect-probe.mjs"), host, String(portOf(server)), "5000"]);
    return JSON.parse(r.stdout.trim()) as { outcome: string; code?: string };
  };

  test("denied before resolution, denied after resolving another name, allowed after resolving the rule's name", async () => {
    expect(await probe(hostIp!)).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect((await env.guest.sh(`dig +short @${gw} other.test`)).stdout.trim()).toBe(hostIp);
    expect(await probe(hostIp!)).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect((await env.guest.sh(`dig +short @${gw} allowed.test`)).stdout.trim()).toBe(hostIp);
    expect(await probe(hostIp!)).toMatchObject({ outcome: "connected" });
    // A neighbouring address that was never resolved stays denied.
    const parts = hostIp!.split(".").map(Number);
    const neighbour = [...parts.slice(0, 3), parts[3] === 254 ? 253 : parts[3]! + 1].join(".");
    expect(await probe(neighbour)).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect(env.logs.some((l) => l.includes(`-> ${neighbour}:${portOf(server)} by default:deny`))).toBe(true);
  });
});
