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
