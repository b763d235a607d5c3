import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ipToString } from "../src/index.js";
import { startDnsmasq } from "./dns-server.js";
import { harnessUnavailable, startGuest } from "./harness.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP dns harness tests: ${skip}`);
const guestScript = (name: string) => fileURLToPath(new URL(`./guest/${name}`, import.meta.url));

// 8 strings of 250 bytes: a ~2 KB TXT answer, over 512 (no EDNS) and over dig's 1232 EDNS size.
const TXT_PARTS = Array.from({ length: 8 }, (_, i) => String.fromCharCode(97 + i).repeat(250));

describe.skipIf(skip)("DNS interceptor against a local dnsmasq, real guest resolvers", () => {
  let dns: Awaited<ReturnType<typeof startDnsmasq>>;
  let env: Awaited<ReturnType<typeof startGuest>>;
  let gw: string;

  beforeAll(async () => {
    dns = await startDnsmasq([
      "--host-record=host.test,192.0.2.11,2001:db8::11",
      "--address=/flood.test/192.0.2.12",
      "--cname=alias.test,alias2.test",
      "--cname=alias2.test,host.test",
      `--txt-record=big.test,${TXT_PARTS.join(",")}`,
      "--server=/fail.test/127.0.0.1#9",
      "--host-record=blocked.test,192.0.2.13",
    ]);
    env = await startGuest({
      dns: { upstreams: [dns.address], timeoutMs: 1000, maxConcurrent: 64, maxQueue: 4096 },
      policy: { rules: [{ action: "deny", domain: "blocked.test" }] },
    });
    gw = ipToString(env.stack.addresses.gatewayIp);
  });
  afterAll(async () => {
    await env?.close();
    await dns?.close();
  });

  const dig = (args: string) => env.guest.sh(`dig +tries=1 +time=3 ${args}`, { timeoutMs: 15_000 });

  test("A and AAAA", async () => {
    expect((await dig(`+short @${gw} host.test A`)).stdout.trim()).toBe("192.0.2.11");
    expect((await dig(`+short @${gw} host.test AAAA`)).stdout.trim()).toBe("2001:db8::11");
  });

  test("host.iii.internal resolves to the gateway", async () => {
    expect((await dig(`+short @${gw} host.iii.internal A`)).stdout.trim()).toBe(gw);
    expect((await dig(`@${gw} host.iii.internal AAAA`)).stdout).toContain("ANSWER: 0");
  });

  test("CNAME chains come back whole", async () => {
    const r = await dig(`+noall +answer @${gw} alias.test A`);
    const lines = r.stdout.trim().split("\n").map((l) => l.split(/\s+/));
    expect(lines.map((l) => [l[0], l[3], l[4]])).toEqual([
      ["alias.test.", "CNAME", "alias2.test."],
      ["alias2.test.", "CNAME", "host.test."],
      ["host.test.", "A", "192.0.2.11"],
    ]);
  });

  test("TXT over 512 bytes: TC bit over UDP, then the full answer over TCP", async () => {
    const r = await dig(`+noedns @${gw} big.test TXT`);
    expect(r.stdout + r.stderr).toContain("Truncated, retrying in TCP mode");
    expect(r.stdout).toContain("status: NOERROR");
    for (const p of TXT_PARTS) expect(r.stdout).toContain(p);
    const tcp = await dig(`+tcp +short @${gw} big.test TXT`);
    expect(tcp.stdout.replace(/[\s"]/g, "")).toBe(TXT_PARTS.join(""));
    expect(env.stack.dns.counters.truncated).toBeGreaterThan(0);
  });

  test("NXDOMAIN, NODATA and SERVFAIL are answered, never silence", async () => {
    expect((await dig(`@${gw} nope.test A`)).stdout).toContain("status: NXDOMAIN");
    const nodata = await dig(`@${gw} host.test MX`);
    expect(nodata.stdout).toContain("status: NOERROR");
    expect(nodata.stdout).toContain("ANSWER: 0");
    const t0 = performance.now();
    const fail = await dig(`@${gw} x.fail.test A`);
    expect(fail.stdout).toContain("status: SERVFAIL");
    expect(performance.now() - t0).toBeLessThan(2500);
  });

  test("a policy-denied name gets REFUSED", async () => {
    expect((await dig(`@${gw} blocked.test A`)).stdout).toContain("status: REFUSED");
    expect(env.logs.some((l) => l.includes("REFUSED blocked.test"))).toBe(true);
  });

  test("queries to any resolver address are intercepted and answered from that address", async () => {
    // dig rejects replies from an unexpected source, so an answer proves the source address.
    expect((await dig(`+short @203.0.113.53 host.test A`)).stdout.trim()).toBe("192.0.2.11");
    expect((await dig(`+tcp +short @198.51.100.53 host.test A`)).stdout.trim()).toBe("192.0.2.11");
    const getent = await env.guest.sh("getent ahostsv4 host.test | head -1");
    expect(getent.stdout).toContain("192.0.2.11");
  });

  test("2,000 queries in flight are all answered without exhausting descriptors or memory", async () => {
    const fds = () => readdirSync("/proc/self/fd").length;
    const fdBefore = fds();
    const rssBefore = process.memoryUsage().rss;
    let maxPending = 0;
    const sampler = setInterval(() => {
      maxPending = Math.max(maxPending, env.stack.dns.pendingQueries);
    }, 5);
    const r = await env.guest.exec([process.execPath, guestScript("dns-flood.mjs"), gw, "2000", "flood.test"], { timeoutMs: 30_000 });
    clearInterval(sampler);
    const out = JSON.parse(r.stdout.trim()) as { answered: number; rcodes: Record<string, number>; retried: number };
    console.log(`DNS flood: ${JSON.stringify(out)}, queries seen by the stack ${env.stack.counters.dnsQueries}, max pending ${maxPending}`);
    expect({ answered: out.answered, rcodes: out.rcodes }).toEqual({ answered: 2000, rcodes: { "0": 2000 } });
    expect(out.retried).toBeLessThan(100);
    expect(maxPending).toBeGreaterThan(64); // queued behind the concurrency bound, not dropped
    expect(fds() - fdBefore).toBeLessThan(20);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 * 1024 * 1024);
  }, 60_000);
});
