import { EventEmitter } from "node:events";
import { type FlowEntry, type FlowSnapshot, ConnectionTracker } from "../conntrack/connection-tracker.js";
import { DnsInterceptor } from "../dns/dns-interceptor.js";
import { NetworkError, PolicyDeniedError } from "../errors.js";
import { PublishedPorts } from "../forward/published-ports.js";
import { TcpForwarder } from "../forward/tcp-forwarder.js";
import { UdpRelay } from "../forward/udp-relay.js";
import type { HostSocketBridge } from "../proxy/host-bridge.js";
import { EgressPolicy, type Protocol } from "../policy/egress-policy.js";
import { DhcpServer } from "../services/dhcp-server.js";
import type { TimerHost } from "../tcp/tcp-connection.js";
import type { FrameLink } from "../transport/frame-link.js";
import { FrameServer, type TransportInputStats } from "../transport/frame-server.js";
import { PcapTap } from "../transport/pcap-tap.js";
import { ETHERNET_HEADER_LENGTH } from "../wire/ethernet.js";
import { ipToString } from "../wire/ip-address.js";
import { type SlotAddresses, slotAddresses } from "./addressing.js";
import { DEFAULT_LIMITS, type NetworkLimits, type NetworkStackOptions } from "./config.js";
import type { StackContext } from "./context.js";
import { type StackCounters, countDrop, newCounters } from "./counters.js";
import { NetworkInterface } from "./interface.js";
import { FrameOutput } from "./output.js";
import { PcapWriter } from "./pcap-writer.js";
import { TcpSocketSet } from "./tcp-sockets.js";

export { DEFAULT_LIMITS } from "./config.js";
export type { NetworkLimits, NetworkStackOptions, PublishedPort } from "./config.js";

export interface DenialEvent {
  protocol: Protocol;
  guestPort: number;
  dstIp: string;
  dstPort: number;
  rule: string;
  error: PolicyDeniedError;
}

export interface NetworkStackEvents {
  "flow-open": [FlowSnapshot];
  "flow-close": [FlowSnapshot];
  denied: [DenialEvent];
  log: [string];
}

/**
 * Node runs expired timers before polling for I/O, so after a long burst a retransmission timer
 * would fire while the ACKs that cancel it still sit unread in the socket. Hopping through
 * setImmediate (check phase, after the poll phase) lets pending frames be processed first.
 */
function timersWithGuard(guard: (fn: () => void) => void): TimerHost {
  return {
    now: () => performance.now(),
    set: (fn, ms) => setTimeout(() => setImmediate(() => guard(fn)), ms),
    clear: (h) => clearTimeout(h as NodeJS.Timeout),
  };
}

/**
 * Userspace Ethernet/IPv4 stack for one VM, assembled from its parts: the frame transport
 * (optionally behind a pcap tap), the interface (dispatch, ARP, ICMP, output), the TCP socket set
 * handing connection requests to the forwarder (egress policy, host dial), the UDP relay with the
 * DNS interceptor, the DHCP server and the published ports. Tracks every flow.
 */
export class NetworkStack extends EventEmitter<NetworkStackEvents> {
  readonly addresses: SlotAddresses;
  readonly mtu: number;
  readonly counters: StackCounters = newCounters();
  readonly tracker: ConnectionTracker;
  readonly policy: EgressPolicy;
  readonly dns: DnsInterceptor;
  private readonly limits: NetworkLimits;
  private readonly transport: FrameServer;
  private readonly tap: PcapTap | undefined;
  private readonly out: FrameOutput;
  private readonly iface: NetworkInterface;
  private readonly tcp: TcpSocketSet;
  private readonly udp: UdpRelay;
  private readonly published: PublishedPorts;
  private readonly burstBridges: HostSocketBridge[] = [];
  private inBurst = false;
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly logSink: (line: string) => void;
  private listening = false;
  private closed = false;
  /** Runs callbacks from sockets and timers so that a bug is counted and logged, never fatal. */
  private readonly guard = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      countDrop(this.counters, "internal-error");
      this.log(`internal error: ${(err as Error).stack ?? String(err)}`);
    }
  };
  /** Frames from the VM (through the pcap tap when there is one). */
  private readonly input: (frame: Buffer) => void;

  constructor(options: NetworkStackOptions) {
    super();
    this.addresses = slotAddresses(options.slot);
    const mtu = options.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65520) {
      throw new NetworkError("InvalidConfig", `mtu ${mtu} is outside 576..65520`);
    }
    this.mtu = mtu;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    const slot = options.slot;
    this.logSink = options.log ?? ((line) => process.stderr.write(`[iii-network slot ${slot}] ${line}\n`));
    this.policy = new EgressPolicy(options.policy);
    this.tracker = new ConnectionTracker({ maxTcpFlows: this.limits.maxTcpFlows, maxUdpFlows: this.limits.maxUdpFlows });
    // The guest reaches host services as host.iii.internal:P (DESIGN §6), i.e. the gateway.
    const localNames = { "host.iii.internal": ipToString(this.addresses.gatewayIp), ...options.dns?.localNames };
    this.dns = new DnsInterceptor({ ...options.dns, localNames }, this.policy, (l) => this.log(l));
    this.transport = new FrameServer(65535 + ETHERNET_HEADER_LENGTH, {
      onFrame: (f) => this.input(f),
      onBurstEnd: () => this.endBurst(),
      log: (l) => this.log(l),
      onConnect: () => this.log("transport: VM connected"),
      onDrain: () => this.guard(() => this.tcp.unblockSenders()),
      onDisconnect: () => this.log("transport: VM disconnected"),
    });
    let link: FrameLink = this.transport;
    if (options.pcapPath) link = this.tap = new PcapTap(this.transport, new PcapWriter(options.pcapPath));
    this.out = new FrameOutput(link, this.addresses, mtu, this.counters);

    const stack = this;
    const ctx: StackContext = {
      addresses: this.addresses,
      mtu,
      limits: this.limits,
      counters: this.counters,
      tracker: this.tracker,
      policy: this.policy,
      dns: this.dns,
      out: this.out,
      timers: timersWithGuard(this.guard),
      guard: this.guard,
      get closed() {
        return stack.closed;
      },
      get inBurst() {
        return stack.inBurst;
      },
      hostWrites: {
        enlist: (bridge) => {
          if (!this.inBurst) return false;
          this.burstBridges.push(bridge);
          return true;
        },
        borrowInput: () => this.transport.borrowInput(),
      },
      log: (line) => this.log(line),
      flowOpened: (entry) => {
        this.armSweep();
        this.emit("flow-open", this.snapshotOf(entry));
      },
      flowClosed: (entry) => {
        const snap = this.snapshotOf(entry);
        this.tracker.close(entry);
        this.emit("flow-close", snap);
      },
      deny: (protocol, guestPort, dstIp, dstPort, rule) => this.deny(protocol, guestPort, dstIp, dstPort, rule),
    };
    this.tcp = new TcpSocketSet(ctx);
    this.tcp.forward = new TcpForwarder(ctx).forward;
    this.udp = new UdpRelay(ctx);
    this.published = new PublishedPorts(ctx, this.tcp, options.ports ?? []);
    this.iface = new NetworkInterface(ctx, this.tcp, this.udp, new DhcpServer(ctx));
    const receive = (frame: Buffer) => {
      if (this.closed) return;
      this.inBurst = true;
      this.iface.receive(frame);
    };
    this.input = this.tap ? this.tap.inbound(receive) : receive;
  }

  /** Starts the frame transport on `socketPath` and the published-port listeners. */
  async listen(socketPath: string): Promise<void> {
    if (this.closed) throw new NetworkError("StackClosed", "the stack is closed");
    if (this.listening) throw new NetworkError("AlreadyListening", "listen() was already called");
    this.listening = true;
    await this.transport.listen(socketPath);
    await this.published.listen();
    this.armSweep();
  }

  /** How the frame transport buffers reads from the VM (see transport/frame-server.ts). */
  get transportInput(): TransportInputStats {
    return this.transport.inputStats;
  }

  /**
   * Guest bytes the TCP flows have promised to take and not yet handed to host sockets (advertised windows plus
   * what the host sockets have not written): at most tcpReceiveBudgetBytes plus TCP_RECEIVE_FLOOR_BYTES per flow.
   */
  get tcpReceiveCommittedBytes(): number {
    return this.tcp.receiveCommittedBytes;
  }

  /** Flow table snapshot (5-tuple, state, bytes each way, age, idle time). */
  snapshot(): FlowSnapshot[] {
    this.tcp.syncAll();
    return this.tracker.snapshot();
  }

  /** Releases every socket, timer and file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.out.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.tcp.close();
    this.udp.close();
    this.published.destroySockets();
    await this.published.close();
    this.dns.close();
    await this.transport.close();
    if (this.tap) await this.tap.close();
  }

  /** Feeds one Ethernet frame as if it came from the VM (used by the transport; also by tests and fuzzing). */
  injectFrame(frame: Buffer): void {
    this.input(frame);
    this.endBurst();
  }

  private endBurst(): void {
    this.inBurst = false;
    this.guard(() => this.tcp.flushAcks());
    if (this.burstBridges.length > 0) {
      for (const bridge of this.burstBridges) this.guard(() => bridge.burstEnded());
      this.burstBridges.length = 0;
    }
  }

  private deny(protocol: Protocol, guestPort: number, dstIp: number, dstPort: number, rule: string): void {
    this.counters.denied++;
    const dst = `${ipToString(dstIp)}:${dstPort}`;
    const error = new PolicyDeniedError(`egress ${protocol} to ${dst} denied by ${rule}`, rule);
    this.log(`policy: denied ${protocol} ${ipToString(this.addresses.guestIp)}:${guestPort} -> ${dst} by ${rule}`);
    this.emit("denied", { protocol, guestPort, dstIp: ipToString(dstIp), dstPort, rule, error });
  }

  /**
   * The idle sweep runs once a second while there are flows to sweep; an idle stack (no flows)
   * holds no timer, so it costs nothing between VM traffic. Armed by listen() when flows exist
   * already, and by every flow that opens.
   */
  private armSweep(): void {
    if (this.sweepTimer || !this.listening || this.closed) return;
    if (this.udp.size + this.tcp.size === 0) return;
    this.sweepTimer = setInterval(() => this.guard(() => this.sweep()), 1000);
  }

  /** Whether the once-a-second idle sweep is armed (only while flows exist). */
  get idleSweepArmed(): boolean {
    return this.sweepTimer !== undefined;
  }

  private sweep(): void {
    const now = Date.now();
    this.udp.sweep(now);
    this.tcp.sweep(now);
    if (this.udp.size + this.tcp.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  private snapshotOf(e: FlowEntry): FlowSnapshot {
    const t = Date.now();
    return { ...e, ageMs: t - e.createdAt, idleMs: t - e.lastActivityAt };
  }

  private log(line: string): void {
    this.logSink(line);
    if (this.listenerCount("log") > 0) this.emit("log", line);
  }
}
