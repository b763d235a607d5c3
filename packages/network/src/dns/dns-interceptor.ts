import dnsPacket, { type DecodedPacket } from "dns-packet";
import type { EgressPolicy } from "../policy/egress-policy.js";
import { parseIp } from "../wire/ip-address.js";
import { DNS_CACHE_DEFAULT_BYTES, DnsCache } from "./dns-cache.js";
import { DnsUpstream } from "./dns-upstream.js";
import { type AnswerInfo, readAnswer, readQuery } from "./dns-wire.js";
import { type DnsServerAddress, parseServer, readResolvConf } from "./resolv-conf.js";

export interface DnsOptions {
  /** Upstream resolvers as "ip" or "ip:port"; default: nameservers of /etc/resolv.conf. */
  upstreams?: string[];
  /** Queries resolved upstream at once (default 256). */
  maxConcurrent?: number;
  /** Queries waiting for a slot; beyond this the answer is SERVFAIL at once (default 4096). */
  maxQueue?: number;
  /** Per-upstream attempt timeout (default 2000 ms). */
  timeoutMs?: number;
  cacheMaxEntries?: number;
  /** Byte budget of the answer cache (default 8 MiB); answers over 4 KiB are never cached. */
  cacheMaxBytes?: number;
  cacheMaxTtlSeconds?: number;
  negativeTtlSeconds?: number;
  /** Connected UDP sockets per upstream server, used in turn (default 1). */
  upstreamSockets?: number;
  /** Queries one upstream socket sends before a new one (new random source port) replaces it (default 256). */
  queriesPerUpstreamSocket?: number;
  /** Names answered locally with an A record (lower-case, no trailing dot), e.g. host.iii.internal. */
  localNames?: Record<string, string>;
}

export interface DnsCounters {
  queries: number;
  cacheHits: number;
  servfail: number;
  refused: number;
  formerr: number;
  truncated: number;
  overloaded: number;
}

const RCODE_FORMERR = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NOTIMP = 4;
const RCODE_REFUSED = 5;

/**
 * Answers every DNS query the guest sends, whatever its destination: from the cache, from the
 * upstream resolvers, or with a real error rcode. It never stays silent.
 */
export class DnsInterceptor {
  private readonly upstream: DnsUpstream;
  private readonly servers: DnsServerAddress[];
  private readonly cache: DnsCache;
  private readonly maxConcurrent: number;
  private readonly maxQueue: number;
  private inFlight = 0;
  private readonly queue: Array<() => void> = [];
  private closed = false;
  private readonly localNames: Map<string, string>;
  readonly counters: DnsCounters = { queries: 0, cacheHits: 0, servfail: 0, refused: 0, formerr: 0, truncated: 0, overloaded: 0 };

  constructor(
    options: DnsOptions,
    private readonly policy: EgressPolicy,
    private readonly log: (line: string) => void,
  ) {
    this.servers = options.upstreams ? options.upstreams.map(parseServer) : readResolvConf();
    this.upstream = new DnsUpstream(options.timeoutMs ?? 2000, {
      ...(options.upstreamSockets !== undefined ? { socketsPerServer: options.upstreamSockets } : {}),
      ...(options.queriesPerUpstreamSocket !== undefined ? { queriesPerSocket: options.queriesPerUpstreamSocket } : {}),
    });
    this.cache = new DnsCache(
      options.cacheMaxEntries ?? 10_000,
      options.cacheMaxTtlSeconds ?? 300,
      options.negativeTtlSeconds ?? 60,
      Date.now,
      options.cacheMaxBytes ?? DNS_CACHE_DEFAULT_BYTES,
    );
    this.maxConcurrent = options.maxConcurrent ?? 256;
    this.maxQueue = options.maxQueue ?? 4096;
    this.localNames = new Map(Object.entries(options.localNames ?? {}));
  }

  /** Upstream UDP sockets opened so far (each one a new random source port). */
  get upstreamSocketsOpened(): number {
    return this.upstream.socketsOpened;
  }

  get pendingQueries(): number {
    return this.inFlight + this.queue.length;
  }

  /** Entries and bytes held by the answer cache. */
  get cacheUsage(): { entries: number; bytes: number } {
    return { entries: this.cache.size, bytes: this.cache.sizeBytes };
  }

  /**
   * Answers one query. `maxUdpBytes` is undefined for TCP. Resolves to undefined only when the
   * message is too short to carry a DNS header (there is nobody to answer).
   */
  async answer(query: Buffer, maxUdpBytes: number | undefined): Promise<Buffer | undefined> {
    this.counters.queries++;
    if (query.length < 12) return undefined;
    // The common shape is read in place; anything else goes through dns-packet as before.
    let q = readQuery(query);
    let decoded: DecodedPacket | undefined;
    if (!q) {
      try {
        decoded = dnsPacket.decode(query);
      } catch {
        this.counters.formerr++;
        return errorHeader(query, RCODE_FORMERR);
      }
      if (decoded.type !== "query") return errorHeader(query, RCODE_FORMERR);
      const opcode = ((decoded.flags ?? 0) >> 11) & 0xf;
      if (opcode !== 0) return errorHeader(query, RCODE_NOTIMP);
      const question = decoded.questions?.[0];
      if (!question || decoded.questions!.length !== 1) {
        this.counters.formerr++;
        return errorHeader(query, RCODE_FORMERR);
      }
      const opt = decoded.additionals?.find((a) => a.type === "OPT");
      q = {
        id: decoded.id ?? 0,
        flags: decoded.flags ?? 0,
        name: question.name,
        type: question.type,
        class: question.class ?? "IN",
        opt: opt !== undefined,
        udpPayloadSize: opt && opt.type === "OPT" ? (opt.udpPayloadSize ?? 512) : 0,
      };
    }
    const full = (): DecodedPacket => (decoded ??= dnsPacket.decode(query));
    const udpLimit = maxUdpBytes === undefined ? undefined : Math.min(maxUdpBytes, q.opt ? Math.max(512, q.udpPayloadSize) : 512);

    const local = this.localNames.get(q.name.toLowerCase().replace(/\.$/, ""));
    if (local !== undefined) return this.finish(buildLocal(full(), local), udpLimit);

    const denied = this.policy.refusedName(q.name);
    if (denied) {
      this.counters.refused++;
      this.log(`dns: REFUSED ${q.name} ${q.type} (denied by ${denied})`);
      return this.finish(buildError(full(), RCODE_REFUSED), udpLimit);
    }

    const key = `${q.name.toLowerCase()}|${q.type}|${q.class}|${q.opt ? "e" : ""}|${q.flags & dnsPacket.CHECKING_DISABLED ? "cd" : ""}`;
    const cached = this.cache.get(key, q.id);
    if (cached) {
      this.counters.cacheHits++;
      return this.finish(cached, udpLimit);
    }

    if (this.servers.length === 0) {
      this.counters.servfail++;
      return this.finish(buildError(full(), RCODE_SERVFAIL), udpLimit);
    }
    if (this.inFlight >= this.maxConcurrent) {
      if (this.queue.length >= this.maxQueue) {
        this.counters.overloaded++;
        this.counters.servfail++;
        return this.finish(buildError(full(), RCODE_SERVFAIL), udpLimit);
      }
      await new Promise<void>((resolve) => this.queue.push(resolve));
      if (this.closed) return this.finish(buildError(full(), RCODE_SERVFAIL), udpLimit);
    }
    this.inFlight++;
    try {
      const raw = await this.resolveUpstream(query);
      // Read in place; dns-packet still judges answers holding record types the reader does not check.
      const info = readAnswer(raw);
      let parsed: DecodedPacket | undefined;
      if (!info || !info.checked) {
        try {
          parsed = dnsPacket.decode(raw);
        } catch {
          this.counters.servfail++;
          return this.finish(buildError(full(), RCODE_SERVFAIL), udpLimit);
        }
      }
      // The upstream client only hands over answers whose question is this query's (dns-upstream.ts).
      if (info) this.cache.put(key, raw, info);
      this.bindForPolicy(q.name, raw, info, parsed);
      return this.finish(raw, udpLimit);
    } catch (err) {
      this.counters.servfail++;
      this.log(`dns: SERVFAIL ${q.name} ${q.type}: ${(err as Error).message}`);
      return this.finish(buildError(full(), RCODE_SERVFAIL), udpLimit);
    } finally {
      this.inFlight--;
      this.queue.shift()?.();
    }
  }

  private async resolveUpstream(query: Buffer): Promise<Buffer> {
    // No Error made up front: capturing its stack trace cost ~5 % of the stack's CPU per query.
    let lastErr: Error | undefined;
    for (const server of this.servers) {
      try {
        return await this.upstream.query(server, query);
      } catch (err) {
        lastErr = err as Error;
      }
    }
    throw lastErr ?? new Error("no upstream");
  }

  /**
   * Binds, for a name a domain rule names, the addresses the answer gives for that name: A records
   * owned by the question name or by a name its CNAME chain (in this answer) leads to. A record for
   * any other owner is not an address of the name and opens nothing. TTL: the smallest along the way.
   */
  private bindForPolicy(name: string, raw: Buffer, info: AnswerInfo | undefined, parsed: DecodedPacket | undefined): void {
    if (!this.policy.hasDomainRuleFor(name)) return;
    if (info && info.a.length === 0) return;
    let packet = parsed;
    if (!packet) {
      try {
        packet = dnsPacket.decode(raw);
      } catch {
        return;
      }
    }
    const answers = packet.answers ?? [];
    // The chain from the question name: name -> alias ttl (the smallest CNAME TTL on the way to it).
    const chain = new Map<string, number>([[canonicalName(name), 0x7fffffff]]);
    for (let grew = true, links = 0; grew && links < 16; links++) {
      grew = false;
      for (const a of answers) {
        if (a.type !== "CNAME" || (a.class ?? "IN") !== "IN") continue;
        const via = chain.get(canonicalName(a.name));
        const target = canonicalName(a.data);
        if (via === undefined || chain.has(target)) continue;
        chain.set(target, Math.min(via, a.ttl ?? 0));
        grew = true;
      }
    }
    const ips: number[] = [];
    let ttl = 3600;
    for (const a of answers) {
      if (a.type !== "A" || (a.class ?? "IN") !== "IN") continue;
      const via = chain.get(canonicalName(a.name));
      if (via === undefined) continue;
      const ip = parseIp(a.data);
      if (ip === undefined) continue;
      ips.push(ip);
      ttl = Math.min(ttl, via, a.ttl ?? 0);
    }
    if (ips.length > 0) this.policy.bindResolved(name, ips, ttl);
  }

  /** Applies the UDP size limit: too big → header + question with TC set (RFC 1035 §4.2.1, RFC 7766). */
  private finish(response: Buffer, udpLimit: number | undefined): Buffer {
    if (udpLimit === undefined || response.length <= udpLimit) return response;
    this.counters.truncated++;
    try {
      const p = dnsPacket.decode(response);
      return dnsPacket.encode({
        id: p.id,
        type: "response",
        flags: (p.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE,
        questions: p.questions ?? [],
        answers: [],
        authorities: [],
        additionals: [],
      });
    } catch {
      const h = Buffer.from(response.subarray(0, 12));
      h[2] = h[2]! | 0x02;
      h.fill(0, 4, 12);
      return h;
    }
  }

  close(): void {
    this.closed = true;
    this.upstream.close();
    for (const wake of this.queue.splice(0)) wake();
    this.cache.clear();
  }
}

/** A name for comparison: lower case, no trailing dot. */
function canonicalName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith(".") ? n.slice(0, -1) : n;
}

/** Authoritative answer for a local name: A for IN/A, NODATA for other types of that name. */
function buildLocal(q: DecodedPacket, address: string): Buffer {
  const question = q.questions![0]!;
  const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  return dnsPacket.encode({
    id: q.id ?? 0,
    type: "response",
    flags: rd | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHORITATIVE_ANSWER,
    questions: q.questions ?? [],
    answers: question.type === "A" ? [{ name: question.name, type: "A", class: "IN", ttl: 60, data: address }] : [],
  });
}

function buildError(q: DecodedPacket, rcode: number): Buffer {
  const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  return dnsPacket.encode({
    id: q.id ?? 0,
    type: "response",
    flags: rd | dnsPacket.RECURSION_AVAILABLE | rcode,
    questions: q.questions ?? [],
  });
}

/** Header-only reply for queries that do not decode. */
function errorHeader(query: Buffer, rcode: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(query.readUInt16BE(0), 0);
  const opcodeBits = query[2]! & 0x78;
  h[2] = 0x80 | opcodeBits | (query[2]! & 0x01);
  h[3] = 0x80 | rcode;
  return h;
}
