import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { EgressPolicy } from "../policy/egress-policy.js";
import { parseIp } from "../wire/ip-address.js";
import { DnsInterceptor } from "./dns-interceptor.js";

// A tiny authoritative server on a local UDP socket (real sockets, real packets).
let server: dgram.Socket;
let port: number;
let served = 0;
beforeAll(async () => {
  server = dgram.createSocket("udp4");
  server.on("message", (msg, rinfo) => {
    const q = dnsPacket.decode(msg);
    const name = q.questions![0]!.name;
    served++;
    if (name === "silent.test") return;
    const resp = dnsPacket.encode({
      id: q.id,
      type: "response",
      flags: dnsPacket.RECURSION_AVAILABLE | (name === "nx.test" ? 3 : 0),
      questions: q.questions!,
      answers: name === "a.test" ? [{ name, type: "A", ttl: 300, data: "192.0.2.1" }] : [],
      authorities: name === "nx.test" ? [{ name: "test", type: "SOA", ttl: 60, data: { mname: "ns", rname: "h", serial: 1, refresh: 1, retry: 1, expire: 1, minimum: 30 } }] : [],
    });
    server.send(resp, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
  port = server.address().port;
});
afterAll(() => server.close());

const query = (name: string, id = 7) => dnsPacket.encode({ id, type: "query", flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: "A", class: "IN" }] });
const rcode = (b: Buffer) => b[3]! & 0x0f;

describe("DnsInterceptor", () => {
  test("answers, caches with aged TTLs, and keeps the guest's id", async () => {
    const policy = new EgressPolicy({ rules: [{ action: "allow", domain: "a.test" }] });
    const d = new DnsInterceptor({ upstreams: [`127.0.0.1:${port}`] }, policy, () => {});
    const before = served;
    const r1 = dnsPacket.decode((await d.answer(query("a.test", 1), 512))!);
    const r2 = dnsPacket.decode((await d.answer(query("a.test", 2), 512))!);
    expect(r1.id).toBe(1);
    expect(r2.id).toBe(2);
    expect(r2.answers).toMatchObject([{ type: "A", data: "192.0.2.1" }]);
    expect(served - before).toBe(1);
    expect(d.counters.cacheHits).toBe(1);
    expect(policy.decide("tcp", parseIp("192.0.2.1")!, 443, 1).allowed).toBe(true);
    d.close();
  });

  test("NXDOMAIN passes through; timeouts become SERVFAIL; garbage gets FORMERR; denied names REFUSED", async () => {
    const d = new DnsInterceptor({ upstreams: [`127.0.0.1:${port}`], timeoutMs: 100 }, new EgressPolicy({ rules: [{ action: "deny", domain: "*.blocked.test" }] }), () => {});
    expect(rcode((await d.answer(query("nx.test"), 512))!)).toBe(3);
    expect(rcode((await d.answer(query("silent.test"), 512))!)).toBe(2);
    const garbage = Buffer.from("00070100000100000000000003", "hex");
    expect(rcode((await d.answer(garbage, 512))!)).toBe(1);
    expect(await d.answer(Buffer.alloc(5), 512)).toBeUndefined();
    expect(rcode((await d.answer(query("x.blocked.test"), 512))!)).toBe(5);
    d.close();
  });

  test("bounded: beyond the queue limit the answer is an immediate SERVFAIL", async () => {
    const d = new DnsInterceptor({ upstreams: [`127.0.0.1:${port}`], timeoutMs: 300, maxConcurrent: 2, maxQueue: 3 }, new EgressPolicy(), () => {});
    const all = await Promise.all(Array.from({ length: 10 }, (_, i) => d.answer(query("silent.test", i), 512)));
    expect(all.every((b) => b && rcode(b) === 2)).toBe(true);
    expect(d.counters.overloaded).toBe(5);
    d.close();
  });

  test("without any upstream the answer is SERVFAIL, never silence", async () => {
    const d = new DnsInterceptor({ upstreams: [] }, new EgressPolicy(), () => {});
    expect(rcode((await d.answer(query("a.test"), 512))!)).toBe(2);
    d.close();
  });
});

describe("DnsInterceptor against answers that do not fit the question", () => {
  // A server that answers with records of other owners, spoofed questions, and records every source port.
  let evil: dgram.Socket;
  let evilPort: number;
  const ports: number[] = [];
  const ids: number[] = [];
  beforeAll(async () => {
    evil = dgram.createSocket("udp4");
    evil.on("message", (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      const question = q.questions![0]!;
      const name = question.name;
      ports.push(rinfo.port);
      ids.push(q.id!);
      const reply = (questions: typeof q.questions, answers: dnsPacket.Answer[]) =>
        evil.send(dnsPacket.encode({ id: q.id, type: "response", flags: dnsPacket.RECURSION_AVAILABLE, questions, answers }), rinfo.port, rinfo.address);
      if (name === "own.test") {
        reply(q.questions, [
          { name: "own.test", type: "A", ttl: 300, data: "192.0.2.10" },
          { name: "other.test", type: "A", ttl: 300, data: "192.0.2.11" },
        ]);
      } else if (name === "alias.test") {
        reply(q.questions, [
          { name: "unrelated.test", type: "A", ttl: 300, data: "192.0.2.13" },
          { name: "mid.test", type: "CNAME", ttl: 300, data: "real.test" },
          { name: "ALIAS.test", type: "CNAME", ttl: 300, data: "mid.test" },
          { name: "real.test", type: "A", ttl: 300, data: "192.0.2.12" },
        ]);
      } else if (name === "spoofed.test") {
        // First an answer with the right id but another question (what an off-path spoofer sends),
        // then the real one.
        reply([{ name: "evil.test", type: "A", class: "IN" }], [{ name: "evil.test", type: "A", ttl: 300, data: "192.0.2.66" }]);
        reply([{ ...question, type: "AAAA" }], [{ name, type: "AAAA", ttl: 300, data: "2001:db8::66" }]);
        setTimeout(() => reply(q.questions, [{ name, type: "A", ttl: 300, data: "192.0.2.7" }]), 30);
      } else {
        reply(q.questions, [{ name, type: "A", ttl: 0, data: "192.0.2.1" }]);
      }
    });
    await new Promise<void>((r) => evil.bind(0, "127.0.0.1", () => r()));
    evilPort = evil.address().port;
  });
  afterAll(() => evil.close());

  test("only A records of the question name or its CNAME chain are bound to the name's allow rule", async () => {
    const policy = new EgressPolicy({ rules: [{ action: "allow", domain: "own.test" }, { action: "allow", domain: "alias.test" }] });
    const d = new DnsInterceptor({ upstreams: [`127.0.0.1:${evilPort}`] }, policy, () => {});
    const allowed = (ip: string) => policy.decide("tcp", parseIp(ip)!, 443, 1).allowed;
    expect(dnsPacket.decode((await d.answer(query("own.test"), 512))!).answers).toHaveLength(2);
    expect(allowed("192.0.2.10")).toBe(true);
    expect(allowed("192.0.2.11")).toBe(false);
    expect(dnsPacket.decode((await d.answer(query("alias.test"), 512))!).answers).toHaveLength(4);
    expect(allowed("192.0.2.12")).toBe(true);
    expect(allowed("192.0.2.13")).toBe(false);
    d.close();
  });

  test("an answer to another question (same id) is ignored, neither returned nor cached", async () => {
    const d = new DnsInterceptor({ upstreams: [`127.0.0.1:${evilPort}`], timeoutMs: 1000 }, new EgressPolicy(), () => {});
    for (const id of [1, 2]) {
      const r = dnsPacket.decode((await d.answer(query("spoofed.test", id), 512))!);
      expect(r.id).toBe(id);
      expect(r.questions).toMatchObject([{ name: "spoofed.test", type: "A" }]);
      expect(r.answers).toMatchObject([{ name: "spoofed.test", type: "A", data: "192.0.2.7" }]);
    }
    // The second came from the cache, which holds the real answer.
    expect(d.counters.cacheHits).toBe(1);
    d.close();
  });

  test("upstream queries leave from a rotating pool of source ports with random ids", async () => {
    const d = new DnsInterceptor({ upstreams: [`127.0.0.1:${evilPort}`], upstreamSockets: 2, queriesPerUpstreamSocket: 5 }, new EgressPolicy(), () => {});
    const from = ports.length;
    for (let i = 0; i < 40; i++) expect(rcode((await d.answer(query(`n${i}.rot.test`, 9), 512))!)).toBe(0);
    const used = ports.slice(from);
    const perPort = new Map<number, number>();
    for (const p of used) perPort.set(p, (perPort.get(p) ?? 0) + 1);
    // 40 queries, at most 5 per socket: at least 8 sockets, each its own port.
    expect(perPort.size).toBeGreaterThanOrEqual(8);
    expect(Math.max(...perPort.values())).toBeLessThanOrEqual(5);
    expect(d.upstreamSocketsOpened).toBeGreaterThanOrEqual(8);
    // Ids are the stack's own random ones, not the guest's 9.
    expect(new Set(ids.slice(from)).size).toBeGreaterThan(30);
    d.close();
  });
});
