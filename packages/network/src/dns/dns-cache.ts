import type { Answer, DecodedPacket } from "dns-packet";

interface CacheEntry {
  packet: DecodedPacket;
  storedAt: number;
  expiresAt: number;
}

/** Answer cache bounded by entries and by TTL; returned packets have their TTLs aged. */
export class DnsCache {
  private readonly entries = new Map<string, CacheEntry>();
  constructor(
    private readonly maxEntries: number,
    private readonly maxTtlSeconds: number,
    private readonly negativeTtlSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): DecodedPacket | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    const t = this.now();
    if (t >= e.expiresAt) {
      this.entries.delete(key);
      return undefined;
    }
    const elapsed = Math.floor((t - e.storedAt) / 1000);
    const age = (rs: Answer[] | undefined) =>
      rs?.map((r) => (r.type === "OPT" ? r : { ...r, ttl: Math.max(0, (r.ttl ?? 0) - elapsed) }) as Answer);
    return { ...e.packet, answers: age(e.packet.answers) ?? [], authorities: age(e.packet.authorities) ?? [] };
  }

  /** Caches NOERROR (positive or NODATA) and NXDOMAIN answers; never SERVFAIL/REFUSED. */
  put(key: string, packet: DecodedPacket): void {
    const rcode = (packet as DecodedPacket & { rcode?: string }).rcode;
    if (rcode !== "NOERROR" && rcode !== "NXDOMAIN") return;
    const answers = (packet.answers ?? []).filter((a) => a.type !== "OPT");
    let ttl: number;
    if (rcode === "NOERROR" && answers.length > 0) {
      ttl = Math.min(this.maxTtlSeconds, ...answers.map((a) => a.ttl ?? 0));
    } else {
      const soa = (packet.authorities ?? []).find((a) => a.type === "SOA");
      const soaTtl = soa && soa.type === "SOA" ? Math.min(soa.ttl ?? 0, soa.data.minimum ?? 0) : this.negativeTtlSeconds;
      ttl = Math.min(this.negativeTtlSeconds, soaTtl);
    }
    if (ttl <= 0) return;
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    const t = this.now();
    this.entries.set(key, { packet, storedAt: t, expiresAt: t + ttl * 1000 });
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
