// Host side of the control channel: what the supervisor in @iii/worker uses.
//
//   const control = HostControl.attach(socket);      // socket: net.Socket to the chardev
//   const ready = await control.ready;               // READY {protocol, timings}
//   control.workloadStdout.pipe(stdoutLog);
//   const run = control.exec({ argv: ["ls", "-la", "/"] });
//   run.stdout.pipe(process.stdout); run.stdin.end();
//   const status = await run.exit;                   // {code, signal, timedOut}
//   control.shutdown(5000); await control.workloadExit;

import { EventEmitter } from "node:events";
import { Readable, Writable, type Duplex } from "node:stream";
import { ControlChannel, ChannelClosedError, type ControlChannelOptions } from "./channel.js";
import { CONTROL_STREAM, PROTOCOL_VERSION, ProtocolError } from "./frame.js";
import type {
  ErrorMessage,
  ExecRequest,
  ExitMessage,
  LogMessage,
  Message,
  ReadyMessage,
  WorkloadExitMessage,
  WorkloadStartedMessage,
} from "./messages.js";

/** A Readable that returns flow-control credit only as its consumer reads. */
class CreditedReadable extends Readable {
  private owed = 0;
  constructor(private readonly grant: (bytes: number) => void) {
    super({ highWaterMark: 256 * 1024 });
  }
  pushData(data: Uint8Array): void {
    if (this.push(data)) this.grant(data.byteLength);
    else this.owed += data.byteLength;
  }
  override _read(): void {
    if (this.owed > 0) {
      const owed = this.owed;
      this.owed = 0;
      this.grant(owed);
    }
  }
}

/**
 * What the guest may still send on one stream: the initial window plus every CREDIT granted, less the data that
 * arrived. STDOUT and STDERR of a stream spend one window (the guest's channel keeps one per stream). A guest
 * within its credit never finds this short: it sends only against CREDIT it has read, which was counted here when
 * it was sent.
 */
class ReceiveWindow {
  private allowance: number;
  private closed = false;
  constructor(
    initialBytes: number,
    private readonly sendCredit: (bytes: number) => void,
  ) {
    this.allowance = initialBytes;
  }
  grant(bytes: number): void {
    if (this.closed || bytes <= 0) return;
    this.allowance += bytes;
    this.sendCredit(bytes);
  }
  /** Counts `bytes` that arrived; false (and nothing counted) when they go past the window. */
  take(bytes: number): boolean {
    if (this.closed || bytes > this.allowance) return false;
    this.allowance -= bytes;
    return true;
  }
  /** No more CREDIT for this stream, and no more data taken: its sender broke the window. */
  close(): void {
    this.closed = true;
  }
  get isClosed(): boolean {
    return this.closed;
  }
}

/** The guest sent data on a stream past the credit the host granted: the stream is closed. */
function creditExceeded(stream: number, bytes: number): ProtocolError {
  return new ProtocolError(`guest sent ${bytes} bytes on stream ${stream} past its credit window; the stream's output is closed`);
}

export interface ExecSession {
  readonly stream: number;
  /** Bytes for the command's stdin; end() sends EOF. */
  readonly stdin: Writable;
  readonly stdout: Readable;
  /** Empty for tty execs (the terminal merges both). */
  readonly stderr: Readable;
  /** Resolves with the pid once the guest started the command. */
  readonly started: Promise<number>;
  /** Resolves with the exit status (also when the command could not start: code -1 + error). */
  readonly exit: Promise<ExitMessage>;
  signal(signal: NodeJS.Signals): void;
  resize(rows: number, cols: number): void;
}

/** The guest did not answer a PING in time (a hung or overloaded init). */
export class PingTimeoutError extends Error {
  readonly code = "PingTimeout";
  constructor(readonly timeoutMs: number) {
    super(`no PONG within ${timeoutMs} ms`);
    this.name = "PingTimeoutError";
  }
}

export class ProtocolVersionError extends Error {
  readonly code = "ProtocolVersion";
  constructor(readonly guestVersion: number) {
    super(`guest speaks control protocol ${guestVersion}, host speaks ${PROTOCOL_VERSION}`);
  }
}

interface ExecState {
  window: ReceiveWindow;
  stdout: CreditedReadable;
  stderr: CreditedReadable;
  resolveStarted: (pid: number) => void;
  resolveExit: (exit: ExitMessage) => void;
  rejectAll: (err: Error) => void;
}

export interface HostControlEvents {
  log: [LogMessage];
  /** An ERROR the guest sent on the control stream, e.g. INIT_FAILED when the workload could not be spawned. */
  guestError: [ErrorMessage];
  workloadStarted: [WorkloadStartedMessage];
  workloadExit: [WorkloadExitMessage];
  error: [Error];
  close: [];
}

export class HostControl extends EventEmitter<HostControlEvents> {
  readonly channel: ControlChannel;
  /** The guest's READY; rejects if the channel closes first or the major version differs. */
  readonly ready: Promise<ReadyMessage>;
  /** Resolves with the first WORKLOAD_EXIT after which init ends (not for restarts). */
  readonly workloadExit: Promise<WorkloadExitMessage>;
  /** The workload's own stdout/stderr (stream 0), across restarts. */
  readonly workloadStdout: Readable;
  readonly workloadStderr: Readable;

  private readonly execs = new Map<number, ExecState>();
  private readonly pings = new Map<number, (rtt: number) => void>();
  private nextStream = 1;
  private nextNonce = 1;
  private restartsPending = 0;

  static attach(io: Duplex, options?: ControlChannelOptions): HostControl {
    return new HostControl(io, options);
  }

  private constructor(io: Duplex, options?: ControlChannelOptions) {
    super();
    this.channel = new ControlChannel(io, options);
    // Stream 0's receive window, spent by the workload's output (STDOUT and STDERR).
    const workloadWindow = new ReceiveWindow(this.channel.initialWindowBytes, (n) => this.channel.grant(CONTROL_STREAM, n));
    const wout = new CreditedReadable((n) => workloadWindow.grant(n));
    const werr = new CreditedReadable((n) => workloadWindow.grant(n));
    this.workloadStdout = wout;
    this.workloadStderr = werr;

    let resolveReady!: (m: ReadyMessage) => void;
    let rejectReady!: (e: Error) => void;
    this.ready = new Promise((res, rej) => ((resolveReady = res), (rejectReady = rej)));
    let resolveWorkloadExit!: (m: WorkloadExitMessage) => void;
    let rejectWorkloadExit!: (e: Error) => void;
    this.workloadExit = new Promise((res, rej) => ((resolveWorkloadExit = res), (rejectWorkloadExit = rej)));
    // Callers that only care about one of them must not get unhandled rejections.
    this.ready.catch(() => {});
    this.workloadExit.catch(() => {});

    this.channel.on("message", (m: Message) => {
      switch (m.type) {
        case "READY":
          if (m.protocol !== PROTOCOL_VERSION) rejectReady(new ProtocolVersionError(m.protocol));
          else resolveReady(m);
          return;
        case "PING":
          this.channel.send({ type: "PONG", stream: m.stream, nonce: m.nonce });
          return;
        case "PONG":
          this.pings.get(m.nonce)?.(0);
          return;
        case "LOG":
          this.emit("log", m);
          return;
        case "WORKLOAD_STARTED":
          this.emit("workloadStarted", m);
          return;
        case "WORKLOAD_EXIT":
          this.emit("workloadExit", m);
          if (this.restartsPending > 0 && m.requested) this.restartsPending -= 1;
          else resolveWorkloadExit(m);
          return;
        case "STDOUT":
        case "STDERR": {
          // Data past the granted window is a protocol violation (init never sends it; a guest writing to init's
          // port could): it would otherwise be buffered without bound while the consumer is paused. The stream is
          // closed, not the channel: framing is intact, and the channel carries the other execs, health pings and
          // the shutdown. One error event per stream: later frames on it are dropped unseen.
          if (m.stream === CONTROL_STREAM) {
            if (workloadWindow.take(m.data.byteLength)) (m.type === "STDOUT" ? wout : werr).pushData(m.data);
            else if (!workloadWindow.isClosed) {
              // The workload's output ends here (the logs keep what came before); control messages go on.
              workloadWindow.close();
              wout.push(null);
              werr.push(null);
              this.emit("error", creditExceeded(CONTROL_STREAM, m.data.byteLength));
            }
            return;
          }
          const exec = this.execs.get(m.stream);
          if (!exec) return;
          if (exec.window.take(m.data.byteLength)) (m.type === "STDOUT" ? exec.stdout : exec.stderr).pushData(m.data);
          else this.closeExecForCredit(m.stream, exec, m.data.byteLength);
          return;
        }
        case "STARTED":
          this.execs.get(m.stream)?.resolveStarted(m.pid);
          return;
        case "EXIT": {
          const exec = this.execs.get(m.stream);
          if (!exec) return;
          this.execs.delete(m.stream);
          this.channel.closeStream(m.stream);
          exec.stdout.push(null);
          exec.stderr.push(null);
          exec.resolveExit(m);
          return;
        }
        case "ERROR": {
          // An exec the guest refused (malformed, busy stream) ends like one that could not start.
          const exec = this.execs.get(m.stream);
          if (exec) {
            this.execs.delete(m.stream);
            this.channel.closeStream(m.stream);
            exec.stdout.push(null);
            exec.stderr.push(null);
            exec.resolveExit({ type: "EXIT", stream: m.stream, code: -1, signal: null, timedOut: false, error: `${m.code}: ${m.message}` });
            return;
          }
          if (m.stream === CONTROL_STREAM) this.emit("guestError", m);
          this.emit("error", new Error(`guest error on stream ${m.stream}: ${m.code}: ${m.message}`));
          return;
        }
        default:
          return;
      }
    });
    // A known frame with a malformed body (a field of the wrong type, range or length: messages.ts checks every
    // field of what the guest sends) is a protocol error, never passed on: init does not send one, a guest writing
    // to init's port could. On an exec's stream it ends that exec like one past its credit; elsewhere it is
    // dropped and reported (the supervisor logs it under the guest-log budget). Framing is intact, so the channel
    // goes on.
    this.channel.on("invalid", ({ stream, error }) => {
      const exec = stream === CONTROL_STREAM ? undefined : this.execs.get(stream);
      if (exec) this.closeExecForViolation(stream, exec, "BAD_MESSAGE", error);
      else this.emit("error", error);
    });
    this.channel.on("error", (err) => this.emit("error", err));
    this.channel.on("close", () => {
      const err = new ChannelClosedError();
      rejectReady(err);
      rejectWorkloadExit(err);
      for (const exec of this.execs.values()) exec.rejectAll(err);
      this.execs.clear();
      wout.push(null);
      werr.push(null);
      this.emit("close");
    });
  }

  /**
   * Ends an exec whose guest side sent past its credit: like an exec the guest refused (code -1, the reason in
   * `error`), its output ends after what was within the window, and the command is killed in case init still runs it.
   */
  private closeExecForCredit(stream: number, exec: ExecState, bytes: number): void {
    this.closeExecForViolation(stream, exec, "CREDIT_EXCEEDED", creditExceeded(stream, bytes));
  }

  /** Ends an exec whose guest side broke the protocol on its stream (`code`: what it broke); the command is killed. */
  private closeExecForViolation(stream: number, exec: ExecState, code: string, error: Error): void {
    this.execs.delete(stream);
    exec.window.close();
    this.channel.send({ type: "SIGNAL", stream, signal: "SIGKILL" });
    this.channel.closeStream(stream);
    exec.stdout.push(null);
    exec.stderr.push(null);
    exec.resolveExit({ type: "EXIT", stream, code: -1, signal: null, timedOut: false, error: `${code}: ${error.message}` });
    this.emit("error", error);
  }

  /** Start a command in the guest. Streams are credit-controlled both ways. */
  exec(request: ExecRequest): ExecSession {
    const stream = this.nextStream;
    this.nextStream = this.nextStream >= 0x7fffffff ? 1 : this.nextStream + 1;
    const window = new ReceiveWindow(this.channel.initialWindowBytes, (n) => this.channel.grant(stream, n));
    const stdout = new CreditedReadable((n) => window.grant(n));
    const stderr = new CreditedReadable((n) => window.grant(n));
    let resolveStarted!: (pid: number) => void;
    let resolveExit!: (exit: ExitMessage) => void;
    let rejectStarted!: (e: Error) => void;
    let rejectExit!: (e: Error) => void;
    const started = new Promise<number>((res, rej) => ((resolveStarted = res), (rejectStarted = rej)));
    const exit = new Promise<ExitMessage>((res, rej) => ((resolveExit = res), (rejectExit = rej)));
    started.catch(() => {});
    exit.catch(() => {});
    const channel = this.channel;
    const stdin = new Writable({
      highWaterMark: 64 * 1024,
      write(chunk: Buffer, _enc, cb) {
        channel.sendData(stream, "STDIN", chunk).then(() => cb(), (err: Error) => cb(err));
      },
      final(cb) {
        channel.send({ type: "EOF", stream });
        cb();
      },
    });
    // Writing after the command exited is not the caller's error to handle.
    stdin.on("error", () => {});
    this.execs.set(stream, {
      window,
      stdout,
      stderr,
      resolveStarted,
      resolveExit: (m) => {
        resolveStarted(-1);
        resolveExit(m);
      },
      rejectAll: (e) => {
        rejectStarted(e);
        rejectExit(e);
        // End rather than destroy(e): an unobserved 'error' event would crash the host.
        stdout.push(null);
        stderr.push(null);
      },
    });
    this.channel.send({ type: "EXEC", stream, ...request });
    return {
      stream,
      stdin,
      stdout,
      stderr,
      started,
      exit,
      signal: (signal) => void this.channel.send({ type: "SIGNAL", stream, signal }),
      resize: (rows, cols) => void this.channel.send({ type: "RESIZE", stream, rows, cols }),
    };
  }

  /** Ask init to stop the workload (SIGTERM to its group, SIGKILL after graceMs) and end. */
  shutdown(graceMs: number): void {
    this.channel.send({ type: "SHUTDOWN", stream: CONTROL_STREAM, graceMs });
  }

  /** Stop the workload like shutdown, then start it again (dev-mode hot reload). */
  restartWorkload(graceMs: number): void {
    this.restartsPending += 1;
    this.channel.send({ type: "RESTART_WORKLOAD", stream: CONTROL_STREAM, graceMs });
  }

  /** Round-trip time in ms; rejects after timeoutMs. */
  ping(timeoutMs = 5000): Promise<number> {
    const nonce = this.nextNonce++;
    const t0 = performance.now();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(nonce);
        reject(new PingTimeoutError(timeoutMs));
      }, timeoutMs);
      this.pings.set(nonce, () => {
        clearTimeout(timer);
        this.pings.delete(nonce);
        resolve(performance.now() - t0);
      });
      this.channel.send({ type: "PING", stream: CONTROL_STREAM, nonce });
    });
  }

  close(): void {
    this.channel.close();
  }
}
