import dnsPacket, { type Answer, type DecodedPacket } from "dns-packet";
import { describe, expect, test } from "vitest";
import { parseIp } from "../wire/ip-address.js";
import { DnsCache } from "./dns-cache.js";
import { answersQuestion, readAnswer, readQuery } from "./dns-wire.js";

/** Deterministic PRNG so a failure reproduces. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const NAMES = ["a.test", "Mixed-Case.Example.test", "x_y.z", "very.long.chain.of.labels.example.test", "*.wild.test", "."];
const TYPES = ["A", "AAAA", "MX", "TXT", "CNAME", "SRV", "PTR", "NS", "ANY"] as const;

function queries(rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const name = NAMES[Math.floor(rand() * NAMES.length)]!;
    const type = TYPES[Math.floor(rand() * TYPES.length)]!;
    const flags = (rand() < 0.5 ? dnsPacket.RECURSION_DESIRED : 0) | (rand() < 0.2 ? dnsPacket.CHECKING_DISABLED : 0);
    const additionals: Answer[] = [];
    if (rand() < 0.4) {
      const options = rand() < 0.5 ? [{ code: 10, data: Buffer.from("0123456789abcdef", "hex") }] : rand() < 0.5 ? [{ code: 8, family: 1, sourcePrefixLength: 24, scopePrefixLength: 0, ip: "192.0.2.0" }] : [];
      additionals.push({ type: "OPT", name: ".", udpPayloadSize: Math.floor(rand() * 5000), options } as Answer);
    }
    out.push(dnsPacket.encode({ id: Math.floor(rand() * 65536), type: "query", flags, questions: [{ name, type: type as "A", class: "IN" }], additionals }));
  }
  return out;
}

function answers(rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < 300; i++) {
    const name = NAMES[Math.floor(rand() * (NAMES.length - 1))]!;
    const ttl = () => Math.floor(rand() * 1000);
    const recs: Answer[] = [];
    const n = Math.floor(rand() * 4);
    for (let j = 0; j < n; j++) {
      const k = Math.floor(rand() * 5);
      if (k === 0) recs.push({ name, type: "A", ttl: ttl(), data: `192.0.2.${j}` });
      else if (k === 1) recs.push({ name, type: "AAAA", ttl: ttl(), data: "2001:db8::1" });
      else if (k === 2) recs.push({ name, type: "CNAME", ttl: ttl(), data: `c${j}.${name}` });
      else if (k === 3) recs.push({ name, type: "TXT", ttl: ttl(), data: "hello" });
      else recs.push({ name, type: "MX", ttl: ttl(), data: { preference: 10, exchange: `mx.${name}` } });
    }
    const authorities: Answer[] =
      rand() < 0.4 ? [{ name: "test", type: "SOA", ttl: ttl(), data: { mname: "ns.test", rname: "h.test", serial: 1, refresh: 2, retry: 3, expire: 4, minimum: ttl() } }] : [];
    const additionals: Answer[] = rand() < 0.5 ? [{ type: "OPT", name: ".", udpPayloadSize: 1232 } as Answer] : [];
    const rcode = rand() < 0.2 ? 3 : rand() < 0.1 ? 2 : 0;
    out.push(
      dnsPacket.encode({
        id: 9,
        type: "response",
        flags: dnsPacket.RECURSION_AVAILABLE | rcode,
        questions: [{ name, type: "A", class: "IN" }],
        answers: recs,
        authorities,
        additionals,
      }),
    );
  }
  return out;
}

/** Copies with one byte changed, or cut short: what a hostile or broken peer sends. */
function mutations(bufs: Buffer[], rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    for (let k = 0; k < 4; k++) {
      const m = Buffer.from(b);
      const at = Math.floor(rand() * m.length);
      if (k === 3) {
        out.push(m.subarray(0, at));
        continue;
      }
      m[at] = Math.floor(rand() * 256);
      out.push(m);
    }
  }
  return out;
}

function decodeOrUndefined(b: Buffer): DecodedPacket | undefined {
  try {
    return dnsPacket.decode(b);
  } catch {
    return undefined;
  }
}

describe("dns-wire", () => {
  const rand = rng(16);
  const qs = queries(rand);
  const as = answers(rand);

  test("readQuery vouches only for queries dns-packet decodes, and reads the same values", () => {
    let fast = 0;
    for (const b of [...qs, ...mutations(qs, rand)]) {
      const q = readQuery(b);
      if (!q) continue;
      fast++;
      const d = decodeOrUndefined(b);
      expect(d, b.toString("hex")).toBeDefined();
      const question = d!.questions![0]!;
      const opt = d!.additionals!.find((a) => a.type === "OPT");
      expect(d!.type).toBe("query");
      expect(((d!.flags ?? 0) >> 11) & 0xf).toBe(0);
      expect(d!.questions!.length).toBe(1);
      expect(q).toEqual({
        id: d!.id,
        flags: d!.flags,
        name: question.name,
        type: question.type,
        class: question.class,
        opt: opt !== undefined,
        udpPayloadSize: opt && opt.type === "OPT" ? opt.udpPayloadSize : 0,
      });
    }
    // Most well-formed queries take the fast path (ECS-bearing ones do not).
    expect(fast).toBeGreaterThan(qs.length * 0.7);
  });

  test("readAnswer agrees with dns-packet on rcode, TTLs, A records and SOA; checked means dns-packet decodes it", () => {
    let checked = 0;
    for (const b of [...as, ...mutations(as, rand)]) {
      const info = readAnswer(b);
      if (!info) continue;
      const d = decodeOrUndefined(b);
      if (info.checked) {
        checked++;
        expect(d, b.toString("hex")).toBeDefined();
      }
      if (!d) continue;
      expect(info.rcode).toBe(b[3]! & 0x0f);
      const recs = (d.answers ?? []).filter((a) => a.type !== "OPT");
      expect(info.answerCount).toBe(recs.length);
      if (recs.length) expect(info.minAnswerTtl).toBe(Math.min(...recs.map((a) => ("ttl" in a ? (a.ttl ?? 0) : 0))));
      expect(info.a).toEqual(recs.filter((a) => a.type === "A").map((a) => ({ ip: parseIp(a.data as string), ttl: a.ttl })));
      const soa = (d.authorities ?? []).find((a) => a.type === "SOA");
      if (soa && soa.type === "SOA") expect([info.soaTtl, info.soaMinimum]).toEqual([soa.ttl, soa.data.minimum]);
      else expect(info.soaTtl).toBe(-1);
    }
    expect(checked).toBeGreaterThan(50);
  });

  test("a cache hit is the stored answer with the guest's id and aged answer/authority TTLs", () => {
    let t = 1_000_000;
    const cache = new DnsCache(10, 300, 60, () => t);
    const msg = dnsPacket.encode({
      id: 1,
      type: "response",
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: [{ name: "a.test", type: "A", class: "IN" }],
      answers: [
        { name: "a.test", type: "CNAME", ttl: 100, data: "b.test" },
        { name: "b.test", type: "A", ttl: 50, data: "192.0.2.1" },
      ],
      additionals: [{ name: "ns.test", type: "A", ttl: 77, data: "192.0.2.9" }],
    });
    cache.put("k", msg, readAnswer(msg)!);
    t += 20_500;
    const hit = dnsPacket.decode(cache.get("k", 4242)!);
    expect(hit.id).toBe(4242);
    expect(hit.answers!.map((a) => ("ttl" in a ? a.ttl : 0))).toEqual([80, 30]);
    expect(hit.additionals!.map((a) => ("ttl" in a ? a.ttl : 0))).toEqual([77]);
    t += 30_000;
    expect(cache.get("k", 1)).toBeUndefined();
  });

  test("negative answers are cached for the SOA's minimum (capped), SERVFAIL and TTL 0 not at all", () => {
    const cache = new DnsCache(10, 300, 60, () => 0);
    const nx = (minimum: number, rcode: number) =>
      dnsPacket.encode({
        id: 1,
        type: "response",
        flags: rcode,
        questions: [{ name: "n.test", type: "A", class: "IN" }],
        authorities: [{ name: "test", type: "SOA", ttl: 500, data: { mname: "ns", rname: "h", serial: 1, refresh: 1, retry: 1, expire: 1, minimum } }],
      });
    for (const [key, msg] of [["nx", nx(30, 3)], ["sf", nx(30, 2)], ["zero", nx(0, 3)]] as const) cache.put(key, msg, readAnswer(msg)!);
    expect(cache.size).toBe(1);
    expect(cache.get("nx", 1)).toBeDefined();
  });
});

test("answersQuestion: same name (any ASCII case), type and class; an error answer may leave the question out", () => {
  const q = dnsPacket.encode({ id: 1, type: "query", questions: [{ name: "Www.Example.test", type: "A", class: "IN" }] });
  const a = (questions: dnsPacket.Question[], flags = 0) => dnsPacket.encode({ id: 1, type: "response", flags, questions });
  expect(answersQuestion(q, a([{ name: "www.EXAMPLE.test", type: "A", class: "IN" }]))).toBe(true);
  expect(answersQuestion(q, a([{ name: "www.example.tesu", type: "A", class: "IN" }]))).toBe(false);
  expect(answersQuestion(q, a([{ name: "www.example.test", type: "AAAA", class: "IN" }]))).toBe(false);
  expect(answersQuestion(q, a([{ name: "www.example.test", type: "A", class: "CH" }]))).toBe(false);
  expect(answersQuestion(q, a([{ name: "www.example.test.x", type: "A", class: "IN" }]))).toBe(false);
  expect(answersQuestion(q, a([]))).toBe(false);
  expect(answersQuestion(q, a([], 2))).toBe(true); // SERVFAIL without a question
  expect(answersQuestion(q, a([], 3))).toBe(false); // NXDOMAIN must name what does not exist
});
