import type { AnswerInfo } from "./dns-wire.js";

interface CacheEntry {
  /** The upstream's answer as received (its own bytes; nothing else holds them). */
  message: Buffer;
  /** Where its answer and authority TTLs sit, and their values when stored. */
  ttlOffsets: number[];
  ttls: number[];
  storedAt: number;
  expiresAt: number;
}

/** Answers bigger than this are not cached (a large answer is rare, and each would take much of the budget). */
export const DNS_CACHE_MAX_ANSWER_BYTES = 4096;
/** Default byte budget of one cache (the messages it holds). */
export const DNS_CACHE_DEFAULT_BYTES = 8 * 1024 * 1024;

/**
 * Answer cache bounded by entries, by bytes (the oldest entries go first) and by TTL. Answers are kept as the upstream's bytes; a hit is a
 * copy with the guest's id and the answer/authority TTLs aged (OPT and additional records as they came).
 */
export class DnsCache {
  private readonly entries = new Map<string, CacheEntry>();
  /** Bytes of the messages held. */
  private bytes = 0;
  constructor(
    private readonly maxEntries: number,
    private readonly maxTtlSeconds: number,
    private readonly negativeTtlSeconds: number,
    private readonly now: () => number = Date.now,
    private readonly maxBytes: number = DNS_CACHE_DEFAULT_BYTES,
  ) {}

  /** The cached answer for `key` carrying `id`, or undefined. */
  get(key: string, id: number): Buffer | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const t = this.now();
    if (t >= e.expiresAt) {
      this.remove(key, e);
      return undefined;
    }
    const elapsed = Math.floor((t - e.storedAt) / 1000);
    const out = Buffer.from(e.message);
    out.writeUInt16BE(id, 0);
    for (let i = 0; i < e.ttlOffsets.length; i++) out.writeUInt32BE(Math.max(0, e.ttls[i]! - elapsed), e.ttlOffsets[i]!);
    return out;
  }

  /** Caches NOERROR (positive or NODATA) and NXDOMAIN answers; never SERVFAIL/REFUSED. `message` is kept as is. */
  put(key: string, message: Buffer, info: AnswerInfo): void {
    if (info.rcode !== 0 && info.rcode !== 3) return;
    let ttl: number;
    if (info.rcode === 0 && info.answerCount > 0) {
      ttl = Math.min(this.maxTtlSeconds, info.minAnswerTtl);
    } else {
      const soaTtl = info.soaTtl >= 0 ? Math.min(info.soaTtl, info.soaMinimum) : this.negativeTtlSeconds;
      ttl = Math.min(this.negativeTtlSeconds, soaTtl);
    }
    if (ttl <= 0 || message.length > DNS_CACHE_MAX_ANSWER_BYTES) return;
    const previous = this.entries.get(key);
    if (previous) this.remove(key, previous);
    // Oldest first, until the new entry fits both bounds.
    for (const [k, e] of this.entries) {
      if (this.entries.size < this.maxEntries && this.bytes + message.length <= this.maxBytes) break;
      this.remove(k, e);
    }
    const t = this.now();
    const ttls = info.ttlOffsets.map((o) => message.readUInt32BE(o));
    this.entries.set(key, { message, ttlOffsets: info.ttlOffsets, ttls, storedAt: t, expiresAt: t + ttl * 1000 });
    this.bytes += message.length;
  }

  private remove(key: string, e: CacheEntry): void {
    this.entries.delete(key);
    this.bytes -= e.message.length;
  }

  /** Bytes of the answers held. */
  get sizeBytes(): number {
    return this.bytes;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
