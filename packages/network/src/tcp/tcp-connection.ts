import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpOptions, type TcpSegment } from "../wire/tcp.js";
import { CongestionControl } from "./congestion.js";
import { Reassembly } from "./reassembly.js";
import { RttEstimator } from "./rtt-estimator.js";
import { SendBuffer } from "./send-buffer.js";
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt } from "./seq.js";

export type TcpState =
  | "SYN_SENT"
  | "SYN_RECEIVED"
  | "ESTABLISHED"
  | "FIN_WAIT_1"
  | "FIN_WAIT_2"
  | "CLOSE_WAIT"
  | "CLOSING"
  | "LAST_ACK"
  | "TIME_WAIT"
  | "CLOSED";

/** Timer source, injected so the state machine stays pure and testable with a fake clock. */
export interface TimerHost {
  now(): number;
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface OutgoingSegment {
  seq: number;
  ack: number;
  flags: number;
  window: number;
  options?: TcpOptions;
  /** Payload: `dataLength` bytes starting `dataOffset` bytes after SND.UNA in the send buffer. */
  dataOffset: number;
  dataLength: number;
}

export type TcpCloseReason = "normal" | "reset-by-guest" | "aborted" | "timeout";

/** What the connection needs from its owner: the wire below and the application (host socket) above. */
export interface TcpConnectionHooks {
  emit(conn: TcpConnection, seg: OutgoingSegment): void;
  /**
   * In-order bytes from the guest; already acknowledged once this returns, so the owner must keep
   * them. The buffer may be a view into the received frame: frames must not be reused by callers.
   */
  deliver(data: Buffer): void;
  /** The guest sent FIN after all its data (half-close of guest→app). */
  deliverEnd(): void;
  /** Bytes handed to `deliver` that the application has not consumed yet (drives our receive window). */
  appBuffered(): number;
  /** The send buffer dropped below the low-water mark: the application may produce again. */
  onSendSpace(): void;
  onEstablished(): void;
  /** Terminal: the connection is CLOSED (after TIME_WAIT, LAST_ACK, a reset or an abort). */
  onClosed(reason: TcpCloseReason): void;
  /** Schedule `flushAck()` soon (batched at the end of the current frame burst). */
  requestAck(conn: TcpConnection): void;
  onRetransmit?(): void;
  /**
   * Whether the link toward the guest can take more data now. When it returns false the
   * connection stops sending new data and calls `onBlocked`; the owner calls `kick()` later.
   */
  canTransmit?(): boolean;
  onBlocked?(conn: TcpConnection): void;
  /** Current send-buffer high-water mark (defaults to the config's); lets the owner share a budget. */
  sendHighWater?(): number;
  /** The send buffer grew (data queued) or shrank (acknowledged, or dropped on close) by `delta` bytes. */
  sendBufferChanged?(delta: number): void;
  /**
   * Current receive buffer: what the guest may have sent that the application has not taken (defaults to the
   * config's receiveBufferBytes); lets the owner share one budget among all connections.
   */
  receiveBuffer?(): number;
  /**
   * The most this connection may have committed to the guest, given what it has committed now (`committed`: bytes
   * the application holds plus the window already advertised): lets the owner bound the total of all connections'
   * promises, which a window once advertised never takes back. Defaults to `receiveBuffer()`.
   */
  receiveGrant?(committed: number): number;
  /** This connection's commitment (see `receiveGrant`) grew or shrank by `delta` bytes; 0 once it is CLOSED. */
  receiveCommitChanged?(delta: number): void;
  /** A guest segment (or part of one) was not accepted; for drop counters. */
  onSegmentDropped?(reason: string): void;
}

export interface TcpConnectionConfig {
  localPort: number;
  remotePort: number;
  iss: number;
  /** Our MSS toward the guest: MTU - 40. */
  mss: number;
  receiveBufferBytes: number;
  sendHighWaterBytes: number;
  timeWaitMs: number;
  maxRetries: number;
  initialRtoMs?: number;
  minRtoMs?: number;
  maxRtoMs?: number;
}

const OUR_WINDOW_SCALE = 7;

/**
 * Where our FIN stands. It is apart from `TcpState` (which the flow table shows as the RFC names):
 * the FIN is queued while data is still unsent, and a go-back-N retransmission takes it back out
 * of SND.NXT ("rewound") without changing the RFC state.
 */
type FinState =
  | { kind: "none" }
  | { kind: "queued" }
  | { kind: "sent"; seq: number }
  | { kind: "rewound"; seq: number };

/** The connection's one timer: retransmission (lazily re-armed to `deadline`) or TIME_WAIT. */
type TcpTimer = { kind: "retransmit"; handle: unknown; deadline: number } | { kind: "time-wait"; handle: unknown } | undefined;

/**
 * One TCP connection between the guest and this stack (RFC 9293), with no I/O of its own.
 * The guest is always the remote peer; "send" means toward the guest.
 */
export class TcpConnection {
  state: TcpState;
  readonly localPort: number;
  readonly remotePort: number;
  private readonly hooks: TcpConnectionHooks;
  private readonly timers: TimerHost;
  private readonly cfg: TcpConnectionConfig;

  // Send side.
  private readonly iss: number;
  private sndUna: number;
  private sndNxt: number;
  /** Highest sequence number sent so far: after a go-back-N retransmission SND.NXT is behind it. */
  private sndMax: number;
  private sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private sndWscale = 0;
  private sendMss: number;
  private readonly cc: CongestionControl;
  private readonly sendBuf = new SendBuffer();
  private fin: FinState = { kind: "none" };

  // Receive side.
  private irs = 0;
  private rcvNxt = 0;
  private rcvWscale = 0;
  private rcvAdvEdge = 0;
  /** appBuffered() + the advertised window, as last reported through receiveCommitChanged. */
  private rcvCommitted = 0;
  /** The window our SYN-ACK offered (0 before the first). */
  private synAckWindow = 0;
  private windowScaling = false;
  private rcvFin = false;
  private ackPending = false;
  /** In-order bytes received since our last ACK, and whether the last segment carried PSH. */
  private rcvSinceAck = 0;
  private lastPush = false;
  private sackOk = false;
  private readonly reassembly: Reassembly;

  // Timers.
  private readonly rtt: RttEstimator;
  private retries = 0;
  private timer: TcpTimer = undefined;

  /** Counters for the connection tracker. */
  bytesFromGuest = 0;
  bytesToGuest = 0;

  private constructor(cfg: TcpConnectionConfig, hooks: TcpConnectionHooks, timers: TimerHost, state: TcpState) {
    this.cfg = cfg;
    this.hooks = hooks;
    this.timers = timers;
    this.localPort = cfg.localPort;
    this.remotePort = cfg.remotePort;
    this.iss = cfg.iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.sendMss = cfg.mss;
    this.cc = new CongestionControl(cfg.mss);
    this.rtt = new RttEstimator(cfg);
    // Out-of-order data is held within the same (shared) receive buffer as in-order data the host has not taken.
    this.reassembly = new Reassembly(() => this.hooks.receiveBuffer?.() ?? this.cfg.receiveBufferBytes);
    this.state = state;
  }

  /** Bytes in the send buffer from SND.UNA onward (in flight + unsent). */
  get sendBuffered(): number {
    return this.sendBuf.length;
  }

  private get finQueued(): boolean {
    return this.fin.kind !== "none";
  }

  private get finSent(): boolean {
    return this.fin.kind === "sent";
  }

  /** Passive open after the host dial succeeded: answer the guest's SYN with SYN-ACK. */
  static accept(syn: TcpSegment, cfg: TcpConnectionConfig, hooks: TcpConnectionHooks, timers: TimerHost): TcpConnection {
    const c = new TcpConnection(cfg, hooks, timers, "SYN_RECEIVED");
    c.irs = syn.seq;
    c.rcvNxt = seqAdd(syn.seq, 1);
    c.applySynOptions(syn.options);
    c.sndWnd = syn.window;
    c.sendSynAck();
    return c;
  }

  /** Active open toward the guest (published ports). */
  static connect(cfg: TcpConnectionConfig, hooks: TcpConnectionHooks, timers: TimerHost): TcpConnection {
    const c = new TcpConnection(cfg, hooks, timers, "SYN_SENT");
    c.sendSyn();
    return c;
  }

  private applySynOptions(o: TcpOptions): void {
    if (o.mss !== undefined && o.mss > 0) this.sendMss = Math.max(64, Math.min(this.cfg.mss, o.mss));
    else this.sendMss = Math.min(this.cfg.mss, 536);
    this.cc.reset(this.sendMss);
    this.sackOk = o.sackPermitted === true;
    if (o.windowScale !== undefined) {
      this.windowScaling = true;
      this.sndWscale = o.windowScale;
      this.rcvWscale = OUR_WINDOW_SCALE;
    } else {
      this.windowScaling = false;
      this.sndWscale = 0;
      this.rcvWscale = 0;
    }
  }

  private sendSyn(): void {
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.hooks.emit(this, {
      seq: this.iss,
      ack: 0,
      flags: TCP_SYN,
      window: 65535,
      options: { mss: this.cfg.mss, windowScale: OUR_WINDOW_SCALE, sackPermitted: true },
      dataOffset: 0,
      dataLength: 0,
    });
    this.armRto();
  }

  private sendSynAck(): void {
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    const options: TcpOptions = { mss: this.cfg.mss };
    // A retransmitted SYN-ACK never offers less than the first did (the guest may already be sending into it).
    const window = Math.max(this.synAckWindow, Math.min(65535, this.receiveLimit()));
    if (this.windowScaling) options.windowScale = OUR_WINDOW_SCALE;
    if (this.sackOk) options.sackPermitted = true;
    this.hooks.emit(this, {
      seq: this.iss,
      ack: this.rcvNxt,
      flags: TCP_SYN | TCP_ACK,
      window,
      options,
      dataOffset: 0,
      dataLength: 0,
    });
    this.synAckWindow = window;
    this.rcvAdvEdge = seqAdd(this.rcvNxt, window);
    this.syncReceiveCommitment();
    this.armRto();
  }

  // ---------------------------------------------------------------- application side

  /** Queue bytes for the guest. Returns false when the owner should stop producing (pause the socket). */
  send(data: Buffer): boolean {
    if (this.finQueued || this.state === "CLOSED") return false;
    if (data.length > 0) {
      this.sendBuf.push(data);
      this.hooks.sendBufferChanged?.(data.length);
      this.trySend();
    }
    return this.sendBuffered < this.highWater();
  }

  /** Whether send() would ask the owner to stop producing now (so it should not start). */
  get sendWouldBlock(): boolean {
    return this.finQueued || this.state === "CLOSED" || this.sendBuffered >= this.highWater();
  }

  /** The application finished sending: FIN after the queued data (half-close toward the guest). */
  end(): void {
    if (this.finQueued || this.state === "CLOSED") return;
    this.fin = { kind: "queued" };
    if (this.state === "SYN_SENT" || this.state === "SYN_RECEIVED") return;
    this.trySend();
  }

  /** Abort: RST to the guest, then CLOSED. */
  abort(reason: TcpCloseReason = "aborted"): void {
    if (this.state === "CLOSED") return;
    if (this.state !== "TIME_WAIT" && this.state !== "SYN_SENT") {
      this.hooks.emit(this, {
        seq: this.sndNxt,
        ack: this.rcvNxt,
        flags: TCP_RST | TCP_ACK,
        window: 0,
        dataOffset: 0,
        dataLength: 0,
      });
    }
    this.toClosed(reason);
  }

  /** Tear down without telling the guest (stack shutdown). */
  destroy(): void {
    if (this.state === "CLOSED") return;
    this.toClosed("aborted");
  }

  /** The application consumed buffered guest data: reopen our window if it grew meaningfully. */
  appDrained(): void {
    if (this.state === "CLOSED" || this.state === "SYN_SENT" || this.state === "SYN_RECEIVED") return;
    this.syncReceiveCommitment();
    const before = seqDiff(this.rcvAdvEdge, this.rcvNxt);
    const after = this.currentWindow();
    if (after - before >= Math.min(this.cfg.receiveBufferBytes / 4, 65536) || before < 2 * this.sendMss) {
      if (after > before) this.sendAck();
    }
  }

  private highWater(): number {
    return this.hooks.sendHighWater?.() ?? this.cfg.sendHighWaterBytes;
  }

  /** The link toward the guest has room again: send what the windows allow. */
  kick(): void {
    if (this.state !== "CLOSED") this.trySend();
  }

  flushAck(): void {
    if (this.ackPending && this.state !== "CLOSED") this.sendAck();
  }

  /**
   * Like flushAck(), but a small message (the guest pushed less than two segments since our last
   * ACK, nothing out of order) may wait: the application's answer usually follows at once and
   * carries the ACK (delayed ACK, RFC 9293 §3.8.6.3). Returns true when the ACK was deferred; the
   * owner then calls flushAck() within a short delay.
   */
  flushAckOrDefer(): boolean {
    if (!this.ackPending || this.state === "CLOSED") return false;
    if (this.state === "ESTABLISHED" && this.lastPush && this.rcvSinceAck < 2 * this.cfg.mss && this.reassembly.empty) return true;
    this.sendAck();
    return false;
  }

  get isClosed(): boolean {
    return this.state === "CLOSED";
  }

  // ---------------------------------------------------------------- segments from the guest

  segmentArrived(seg: TcpSegment): void {
    switch (this.state) {
      case "CLOSED":
        return;
      case "SYN_SENT":
        this.synSentArrived(seg);
        return;
      default:
        break;
    }
    const flags = seg.flags;
    if (this.state === "SYN_RECEIVED" && flags & TCP_SYN && !(flags & TCP_ACK)) {
      if (seg.seq === this.irs) this.sendSynAck();
      return;
    }
    const payloadLength = seg.payload.length;
    const segLen = payloadLength + (flags & TCP_SYN ? 1 : 0) + (flags & TCP_FIN ? 1 : 0);
    const wnd = Math.max(0, seqDiff(this.rcvAdvEdge, this.rcvNxt));
    if (!this.acceptable(seg.seq, segLen, wnd)) {
      this.hooks.onSegmentDropped?.("tcp-unacceptable");
      if (!(flags & TCP_RST)) this.sendAck();
      return;
    }
    if (flags & TCP_RST) {
      // RFC 5961 §3: only an exact match resets; an in-window RST gets a challenge ACK.
      if (seg.seq === this.rcvNxt || this.state === "SYN_RECEIVED") this.toClosed("reset-by-guest");
      else this.sendAck();
      return;
    }
    if (flags & TCP_SYN) {
      this.sendAck();
      return;
    }
    if (!(flags & TCP_ACK)) return;

    if (this.state === "SYN_RECEIVED") {
      if (seg.ack !== seqAdd(this.iss, 1)) {
        this.emitRst(seg.ack);
        return;
      }
      this.sndUna = seg.ack;
      this.sndWnd = seg.window << this.sndWscale;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      this.retries = 0;
      this.disarmRto();
      this.state = "ESTABLISHED";
      this.hooks.onEstablished();
      if (this.state !== "ESTABLISHED") return;
    } else if (!this.processAck(seg)) {
      return;
    }
    if ((this.state as TcpState) === "CLOSED") return;

    if (payloadLength > 0) {
      if (this.state === "ESTABLISHED" || this.state === "FIN_WAIT_1" || this.state === "FIN_WAIT_2") {
        if (!this.receiveData(seg)) return;
      } else {
        this.sendAck();
      }
    }
    if (flags & TCP_FIN) this.receiveFin(seg);
    if ((this.state as TcpState) !== "CLOSED") this.trySend();
  }

  private acceptable(seq: number, segLen: number, wnd: number): boolean {
    const rcvNxt = this.rcvNxt;
    if (segLen === 0) {
      if (wnd === 0) return seq === rcvNxt;
      return seqGe(seq, rcvNxt) && seqLt(seq, seqAdd(rcvNxt, wnd)) || seq === rcvNxt;
    }
    if (wnd === 0) return false;
    const end = seqAdd(seq, segLen - 1);
    const edge = seqAdd(rcvNxt, wnd);
    return (seqGe(seq, rcvNxt) && seqLt(seq, edge)) || (seqGe(end, rcvNxt) && seqLt(end, edge));
  }

  private synSentArrived(seg: TcpSegment): void {
    const flags = seg.flags;
    if (flags & TCP_ACK && seg.ack !== this.sndNxt) {
      if (!(flags & TCP_RST)) this.emitRst(seg.ack);
      return;
    }
    if (flags & TCP_RST) {
      if (flags & TCP_ACK) this.toClosed("reset-by-guest");
      return;
    }
    if (!(flags & TCP_SYN) || !(flags & TCP_ACK)) return;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.applySynOptions(seg.options);
    this.sndUna = seg.ack;
    this.sndWnd = seg.window; // never scaled in a SYN (RFC 7323 §2.2)
    this.sndWl1 = seg.seq;
    this.sndWl2 = seg.ack;
    this.retries = 0;
    this.disarmRto();
    this.state = "ESTABLISHED";
    this.rcvAdvEdge = this.rcvNxt;
    this.sendAck();
    this.hooks.onEstablished();
    if (this.state === "ESTABLISHED") this.trySend();
  }

  /** Returns false when the segment must be dropped. */
  private processAck(seg: TcpSegment): boolean {
    const ack = seg.ack;
    if (seqGt(ack, this.sndMax)) {
      this.sendAck();
      return false;
    }
    if (seqGt(ack, this.sndNxt)) {
      // The guest acknowledges data we sent before a (spurious) go-back-N rewind.
      this.sndNxt = ack;
      if (this.fin.kind === "rewound" && seqGt(ack, this.fin.seq)) this.fin = { kind: "sent", seq: this.fin.seq };
    }
    const windowBefore = this.sndWnd;
    if (seqGt(ack, this.sndUna)) {
      let acked = seqDiff(ack, this.sndUna);
      if (this.fin.kind === "sent" && seqGt(ack, this.fin.seq)) acked -= 1;
      acked = Math.min(acked, this.sendBuf.length);
      this.sendBuf.consume(acked);
      if (acked > 0) this.hooks.sendBufferChanged?.(-acked);
      this.bytesToGuest += acked;
      this.rtt.acked(ack, this.timers.now());
      this.cc.acked(acked, this.sendMss);
      this.sndUna = ack;
      this.retries = 0;
      if (this.sndUna === this.sndMax) this.disarmRto();
      else this.armRto(true);
      if (acked > 0 && this.sendBuffered < this.highWater() / 2) this.hooks.onSendSpace();
    } else if (
      ack === this.sndUna &&
      seg.payload.length === 0 &&
      !(seg.flags & TCP_FIN) &&
      this.sndNxt !== this.sndUna &&
      seg.window << this.sndWscale === windowBefore
    ) {
      if (this.cc.duplicateAck()) this.fastRetransmit();
    }
    if (seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && seqLe(this.sndWl2, ack))) {
      this.sndWnd = seg.window << this.sndWscale;
      this.sndWl1 = seg.seq;
      this.sndWl2 = ack;
    }
    if (this.fin.kind === "sent" && seqGt(ack, this.fin.seq)) {
      switch (this.state) {
        case "FIN_WAIT_1":
          this.state = "FIN_WAIT_2";
          break;
        case "CLOSING":
          this.enterTimeWait();
          return false;
        case "LAST_ACK":
          this.toClosed("normal");
          return false;
        default:
          break;
      }
    }
    if (this.state === "TIME_WAIT") {
      if (seg.flags & TCP_FIN) {
        this.sendAck();
        this.enterTimeWait();
      }
      return false;
    }
    return true;
  }

  private receiveData(seg: TcpSegment): boolean {
    let payload = seg.payload;
    let seq = seg.seq;
    if (seqGt(seq, this.rcvNxt)) {
      // Out of order (a frame was lost before us): keep it inside the window and report it with
      // SACK (RFC 2018) so the guest retransmits only the hole.
      this.queueOutOfOrder(seq, payload);
      this.sendAck();
      return false;
    }
    const skip = seqDiff(this.rcvNxt, seq);
    if (skip > 0) {
      payload = payload.subarray(skip);
      seq = this.rcvNxt;
    }
    const room = Math.max(0, seqDiff(this.rcvAdvEdge, this.rcvNxt));
    let truncated = false;
    if (payload.length > room) {
      payload = payload.subarray(0, room);
      truncated = true;
    }
    if (payload.length > 0) {
      this.rcvNxt = seqAdd(this.rcvNxt, payload.length);
      this.bytesFromGuest += payload.length;
      this.rcvSinceAck += payload.length;
      this.lastPush = (seg.flags & TCP_PSH) !== 0;
      // A view, not a copy, valid during this call: an application keeping it past the call copies
      // it or holds a loan on the transport's read buffer (proxy/host-bridge.ts).
      this.hooks.deliver(Buffer.from(payload.buffer, payload.byteOffset, payload.length));
      if (!this.reassembly.empty && this.drainOutOfOrder()) this.sendAck();
      else this.scheduleAck();
    }
    if (truncated) {
      this.hooks.onSegmentDropped?.("tcp-beyond-window");
      this.sendAck();
      return false;
    }
    return true;
  }

  private queueOutOfOrder(seq: number, payload: Uint8Array): void {
    // Bounded by the receive buffer in bytes, whatever overlaps a peer sends.
    const queued = this.reassembly.insert(seq, payload, seqDiff(this.rcvAdvEdge, seq));
    this.hooks.onSegmentDropped?.(queued ? "tcp-out-of-order-queued" : "tcp-out-of-order-dropped");
  }

  /** Moves queued segments that became in-order to the application. Returns whether any did. */
  private drainOutOfOrder(): boolean {
    const before = this.rcvNxt;
    this.reassembly.drain(this.rcvNxt, (data) => {
      this.rcvNxt = seqAdd(this.rcvNxt, data.length);
      this.bytesFromGuest += data.length;
      this.hooks.deliver(data);
    });
    return this.rcvNxt !== before;
  }

  private sackBlocks(): Array<[number, number]> | undefined {
    return this.sackOk ? this.reassembly.sackBlocks() : undefined;
  }

  private receiveFin(seg: TcpSegment): void {
    const finAt = seqAdd(seg.seq, seg.payload.length);
    if (this.rcvFin) {
      this.sendAck();
      return;
    }
    if (finAt !== this.rcvNxt) return;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.rcvFin = true;
    switch (this.state) {
      case "ESTABLISHED":
        this.state = "CLOSE_WAIT";
        break;
      case "FIN_WAIT_1":
        this.state = "CLOSING";
        break;
      case "FIN_WAIT_2":
        this.sendAck();
        this.hooks.deliverEnd();
        this.enterTimeWait();
        return;
      default:
        break;
    }
    this.sendAck();
    this.hooks.deliverEnd();
  }

  // ---------------------------------------------------------------- output

  /** What this connection may commit in all (application bytes + advertised window). */
  private receiveLimit(): number {
    if (this.hooks.receiveGrant) return this.hooks.receiveGrant(this.rcvCommitted);
    return this.hooks.receiveBuffer?.() ?? this.cfg.receiveBufferBytes;
  }

  /** Reports a change of appBuffered() + the advertised window to the owner (0 once CLOSED). */
  private syncReceiveCommitment(): void {
    if (!this.hooks.receiveCommitChanged) return;
    if (this.state === "CLOSED") return this.reportCommitment(0);
    // Once the guest's FIN is in, nothing more can arrive: the window promises nothing (TIME_WAIT lingers).
    const finReceived = this.state === "CLOSE_WAIT" || this.state === "LAST_ACK" || this.state === "CLOSING" || this.state === "TIME_WAIT";
    this.reportCommitment(this.hooks.appBuffered() + (finReceived ? 0 : Math.max(0, seqDiff(this.rcvAdvEdge, this.rcvNxt))));
  }

  private reportCommitment(now: number): void {
    if (now === this.rcvCommitted) return;
    const delta = now - this.rcvCommitted;
    this.rcvCommitted = now;
    this.hooks.receiveCommitChanged?.(delta);
  }

  private currentWindow(): number {
    const free = Math.max(0, this.receiveLimit() - this.hooks.appBuffered());
    const max = this.windowScaling ? 65535 << this.rcvWscale : 65535;
    const edge = seqAdd(this.rcvNxt, Math.min(free, max));
    // Never move the right edge left (RFC 9293 §3.8.6.2.2).
    if (seqGt(edge, this.rcvAdvEdge)) return seqDiff(edge, this.rcvNxt);
    return Math.max(0, seqDiff(this.rcvAdvEdge, this.rcvNxt));
  }

  private windowField(): number {
    const wnd = this.currentWindow();
    const raw = Math.min(65535, wnd >>> this.rcvWscale);
    const edge = seqAdd(this.rcvNxt, raw << this.rcvWscale);
    if (seqGt(edge, this.rcvAdvEdge)) this.rcvAdvEdge = edge;
    this.syncReceiveCommitment();
    return raw;
  }

  /** Asks the owner for an ACK at the end of the burst (each time: the owner dedupes). */
  private scheduleAck(): void {
    this.ackPending = true;
    this.hooks.requestAck(this);
  }

  private ackSent(): void {
    this.ackPending = false;
    this.rcvSinceAck = 0;
  }

  private sendAck(): void {
    this.ackSent();
    const blocks = this.sackBlocks();
    this.hooks.emit(this, {
      seq: this.sndNxt,
      ack: this.rcvNxt,
      flags: TCP_ACK,
      window: this.windowField(),
      ...(blocks ? { options: { sackBlocks: blocks } } : {}),
      dataOffset: 0,
      dataLength: 0,
    });
  }

  private emitRst(seq: number): void {
    this.hooks.emit(this, { seq, ack: 0, flags: TCP_RST, window: 0, dataOffset: 0, dataLength: 0 });
  }

  private canSendData(): boolean {
    const s = this.state;
    return s === "ESTABLISHED" || s === "CLOSE_WAIT" || s === "FIN_WAIT_1" || s === "CLOSING" || s === "LAST_ACK";
  }

  private trySend(): void {
    if (!this.canSendData()) return;
    const mss = this.sendMss;
    for (;;) {
      const inFlight = seqDiff(this.sndNxt, this.sndUna) - (this.finSent ? 1 : 0);
      const unsent = this.sendBuffered - inFlight;
      if (unsent <= 0) break;
      const usable = Math.min(this.sndWnd, this.cc.cwnd) - inFlight;
      if (usable <= 0) break;
      if (this.hooks.canTransmit && !this.hooks.canTransmit()) {
        this.hooks.onBlocked?.(this);
        return;
      }
      const len = Math.min(mss, unsent, usable);
      // Sender-side silly window avoidance (RFC 9293 §3.8.6.2.1), relaxed when nothing is in flight.
      if (len < mss && len < unsent && inFlight > 0 && len < this.sndWnd / 2) break;
      let flags = TCP_ACK;
      if (len === unsent) flags |= TCP_PSH;
      const withFin = (this.fin.kind === "queued" || this.fin.kind === "rewound") && len === unsent;
      if (withFin) flags |= TCP_FIN;
      const seq = this.sndNxt;
      this.hooks.emit(this, {
        seq,
        ack: this.rcvNxt,
        flags,
        window: this.windowField(),
        dataOffset: inFlight,
        dataLength: len,
      });
      this.ackSent();
      this.rtt.sent(seq, len, this.timers.now());
      this.sndNxt = seqAdd(this.sndNxt, len);
      if (withFin) this.markFinSent();
      if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
      this.armRto(false);
    }
    const inFlight = seqDiff(this.sndNxt, this.sndUna) - (this.finSent ? 1 : 0);
    if (this.finQueued && !this.finSent && inFlight >= this.sendBuffered) {
      this.hooks.emit(this, {
        seq: this.sndNxt,
        ack: this.rcvNxt,
        flags: TCP_FIN | TCP_ACK,
        window: this.windowField(),
        dataOffset: 0,
        dataLength: 0,
      });
      this.ackSent();
      this.markFinSent();
      if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
      this.armRto(false);
    }
    if (this.sendBuffered > inFlight && this.sndMax === this.sndUna) this.armRto(false); // persist
  }

  private markFinSent(): void {
    this.fin = { kind: "sent", seq: this.sndNxt };
    this.sndNxt = seqAdd(this.sndNxt, 1);
    if (this.state === "ESTABLISHED") this.state = "FIN_WAIT_1";
    else if (this.state === "CLOSE_WAIT") this.state = "LAST_ACK";
  }

  /** RFC 5681 §3.2: resend only the segment at SND.UNA; SND.NXT stays where it is. */
  private fastRetransmit(): void {
    this.cc.fastRetransmit(seqDiff(this.sndNxt, this.sndUna), this.sendMss);
    const len = Math.min(this.sendMss, this.sendBuffered);
    if (len <= 0) return;
    this.hooks.onRetransmit?.();
    this.rtt.cancel();
    this.hooks.emit(this, {
      seq: this.sndUna,
      ack: this.rcvNxt,
      flags: TCP_ACK,
      window: this.windowField(),
      dataOffset: 0,
      dataLength: len,
    });
    this.ackSent();
    this.armRto(true);
  }

  private retransmitFromUna(): void {
    this.hooks.onRetransmit?.();
    const fin = this.fin;
    if (fin.kind === "sent" && !seqGt(this.sndUna, fin.seq)) this.fin = { kind: "rewound", seq: fin.seq };
    this.sndNxt = this.sndUna;
    this.rtt.cancel();
    this.trySend();
  }

  // ---------------------------------------------------------------- timers

  /**
   * Arms the retransmission timer for RTO from now; an armed timer keeps its deadline unless
   * `restart`. Moving the deadline later does not touch the host timer: it re-arms when it fires.
   */
  private armRto(restart = false): void {
    const t = this.timer;
    if (t?.kind === "time-wait") return;
    if (t && !restart) return;
    const rto = this.rtt.rto;
    const deadline = this.timers.now() + rto;
    if (t) t.deadline = deadline;
    else this.timer = { kind: "retransmit", handle: this.timers.set(() => this.rtoFired(), rto), deadline };
  }

  private disarmRto(): void {
    if (this.timer?.kind === "retransmit") this.clearTimer();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      this.timers.clear(this.timer.handle);
      this.timer = undefined;
    }
  }

  private rtoFired(): void {
    const t = this.timer;
    if (t?.kind !== "retransmit") return;
    this.timer = undefined;
    if (this.state === "CLOSED" || this.state === "TIME_WAIT") return;
    const now = this.timers.now();
    if (now < t.deadline) {
      this.timer = { kind: "retransmit", handle: this.timers.set(() => this.rtoFired(), t.deadline - now), deadline: t.deadline };
      return;
    }
    if (this.sndMax === this.sndUna && this.sendBuffered > 0 && this.sndWnd === 0) {
      // Zero-window probe: an old sequence number makes the guest answer with its current window.
      this.hooks.emit(this, {
        seq: seqAdd(this.sndUna, -1),
        ack: this.rcvNxt,
        flags: TCP_ACK,
        window: this.windowField(),
        dataOffset: 0,
        dataLength: 0,
      });
      this.rtt.backoff(5000);
      this.armRto(true);
      return;
    }
    if (this.sndMax === this.sndUna) return;
    this.retries++;
    if (this.retries > this.cfg.maxRetries) {
      this.abort("timeout");
      return;
    }
    this.rtt.backoff();
    if (this.state === "SYN_SENT") {
      this.hooks.onRetransmit?.();
      this.sendSyn();
      return;
    }
    if (this.state === "SYN_RECEIVED") {
      this.hooks.onRetransmit?.();
      this.sendSynAck();
      return;
    }
    this.cc.timeout(seqDiff(this.sndNxt, this.sndUna), this.sendMss);
    this.retransmitFromUna();
    this.armRto(true);
  }

  private enterTimeWait(): void {
    this.state = "TIME_WAIT";
    this.clearTimer();
    const handle = this.timers.set(() => {
      this.timer = undefined;
      this.toClosed("normal");
    }, this.cfg.timeWaitMs);
    this.timer = { kind: "time-wait", handle };
  }

  private toClosed(reason: TcpCloseReason): void {
    if (this.state === "CLOSED") return;
    this.state = "CLOSED";
    this.clearTimer();
    const unsent = this.sendBuf.length;
    this.sendBuf.clear();
    if (unsent > 0) this.hooks.sendBufferChanged?.(-unsent);
    this.reassembly.clear();
    this.syncReceiveCommitment();
    this.hooks.onClosed(reason);
  }

  /** Copies `length` bytes starting `offset` bytes after SND.UNA into `dst`. */
  copySendData(offset: number, length: number, dst: Uint8Array, dstOffset: number): void {
    this.sendBuf.copy(offset, length, dst, dstOffset);
  }
}
