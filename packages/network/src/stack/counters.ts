/** Observable counters of one stack; `drops` is keyed by reason (e.g. "ipv4-checksum"). */
export interface StackCounters {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  retransmits: number;
  tcpOpened: number;
  udpOpened: number;
  denied: number;
  dnsQueries: number;
  drops: Record<string, number>;
}

export function newCounters(): StackCounters {
  return { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, retransmits: 0, tcpOpened: 0, udpOpened: 0, denied: 0, dnsQueries: 0, drops: {} };
}

export function countDrop(c: StackCounters, reason: string): void {
  c.drops[reason] = (c.drops[reason] ?? 0) + 1;
}
