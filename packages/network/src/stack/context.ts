import type { ConnectionTracker, FlowEntry } from "../conntrack/connection-tracker.js";
import type { DnsInterceptor } from "../dns/dns-interceptor.js";
import type { HostWriteBatching } from "../proxy/host-bridge.js";
import type { EgressPolicy, Protocol } from "../policy/egress-policy.js";
import type { TimerHost } from "../tcp/tcp-connection.js";
import type { SlotAddresses } from "./addressing.js";
import type { NetworkLimits } from "./config.js";
import type { StackCounters } from "./counters.js";
import type { FrameOutput } from "./output.js";

/** What the parts of one VM's stack share: its configuration, tables, output and event sink. */
export interface StackContext {
  readonly addresses: SlotAddresses;
  readonly mtu: number;
  readonly limits: NetworkLimits;
  readonly counters: StackCounters;
  readonly tracker: ConnectionTracker;
  readonly policy: EgressPolicy;
  readonly dns: DnsInterceptor;
  readonly out: FrameOutput;
  readonly timers: TimerHost;
  /** Runs callbacks from sockets and timers so that a bug is counted and logged, never fatal. */
  readonly guard: (fn: () => void) => void;
  readonly closed: boolean;
  /** True while a burst of frames from the VM is being processed. */
  readonly inBurst: boolean;
  /** Host-socket writes: batched per burst, and views of the VM's frames lent safely. */
  readonly hostWrites: HostWriteBatching;
  log(line: string): void;
  /** A tracker entry was opened: tell the listeners. */
  flowOpened(entry: FlowEntry): void;
  /** Closes a tracker entry and tells the listeners. */
  flowClosed(entry: FlowEntry): void;
  /** The egress policy refused a flow: count, log and emit `denied`. */
  deny(protocol: Protocol, guestPort: number, dstIp: number, dstPort: number, rule: string): void;
}
