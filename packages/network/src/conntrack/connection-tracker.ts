export type FlowProtocol = "tcp" | "udp";

export interface FlowEntry {
  id: number;
  protocol: FlowProtocol;
  /** "outbound": guest-initiated; "inbound": a published port. */
  direction: "outbound" | "inbound";
  guestIp: string;
  guestPort: number;
  remoteIp: string;
  remotePort: number;
  state: string;
  bytesFromGuest: number;
  bytesToGuest: number;
  createdAt: number;
  lastActivityAt: number;
}

export interface FlowSnapshot extends FlowEntry {
  ageMs: number;
  idleMs: number;
}

export interface ConnectionTrackerLimits {
  maxTcpFlows: number;
  maxUdpFlows: number;
}

/** Every TCP/UDP flow of one VM with limits. Pure bookkeeping; owners update state and bytes. */
export class ConnectionTracker {
  private readonly flows = new Map<number, FlowEntry>();
  private nextId = 1;
  private tcpCount = 0;
  private udpCount = 0;
  readonly limits: ConnectionTrackerLimits;
  private readonly now: () => number;

  constructor(limits: ConnectionTrackerLimits, now: () => number = Date.now) {
    this.limits = limits;
    this.now = now;
  }

  canOpen(protocol: FlowProtocol): boolean {
    return protocol === "tcp" ? this.tcpCount < this.limits.maxTcpFlows : this.udpCount < this.limits.maxUdpFlows;
  }

  open(init: Omit<FlowEntry, "id" | "createdAt" | "lastActivityAt" | "bytesFromGuest" | "bytesToGuest">): FlowEntry {
    const t = this.now();
    const entry: FlowEntry = { ...init, id: this.nextId++, bytesFromGuest: 0, bytesToGuest: 0, createdAt: t, lastActivityAt: t };
    this.flows.set(entry.id, entry);
    if (entry.protocol === "tcp") this.tcpCount++;
    else this.udpCount++;
    return entry;
  }

  touch(entry: FlowEntry): void {
    entry.lastActivityAt = this.now();
  }

  close(entry: FlowEntry): void {
    if (this.flows.delete(entry.id)) {
      if (entry.protocol === "tcp") this.tcpCount--;
      else this.udpCount--;
    }
  }

  get size(): number {
    return this.flows.size;
  }

  count(protocol: FlowProtocol): number {
    return protocol === "tcp" ? this.tcpCount : this.udpCount;
  }

  /** Entries idle longer than `idleMs` (the owner evicts them). */
  idle(protocol: FlowProtocol, idleMs: number): FlowEntry[] {
    const cutoff = this.now() - idleMs;
    const out: FlowEntry[] = [];
    for (const e of this.flows.values()) if (e.protocol === protocol && e.lastActivityAt < cutoff) out.push(e);
    return out;
  }

  snapshot(): FlowSnapshot[] {
    const t = this.now();
    return Array.from(this.flows.values(), (e) => ({ ...e, ageMs: t - e.createdAt, idleMs: t - e.lastActivityAt }));
  }
}
