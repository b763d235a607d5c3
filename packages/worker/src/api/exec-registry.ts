import { randomUUID } from "node:crypto";
import { TextDecoder } from "node:util";
import type { ExecSession, HostControl } from "@iii/init";
import type { WebSocket } from "ws";
import { encodeOutput, type ExecCreateRequest, type ExitFrame, type OutputKind } from "./attach-protocol.js";

export const DEFAULT_MAX_EXECS = 32;
const BACKLOG_LIMIT_BYTES = 8 * 1024 * 1024;
const DEFAULT_PING_MS = 5_000;
const DEFAULT_REATTACH_GRACE_MS = 60_000;
const SESSION_ERROR_GRACE_MS = 500;

interface OutputChunk {
  seq: number;
  kind: OutputKind;
  data: Buffer;
}

interface Attachment {
  socket: WebSocket;
  utf8: boolean;
  decoders: Record<OutputKind, TextDecoder>;
  missedPongs: number;
  pingTimer: NodeJS.Timeout;
}

export class ExecConflictError extends Error {
  readonly code = "ExecConflict";
  readonly status = 409;
}

/** One exec: its session in the guest, a bounded replay backlog, and at most one attached client. */
export class ExecRecord {
  readonly id = randomUUID();
  readonly createdAt = Date.now();
  exit: ExitFrame | undefined;
  private readonly backlog: OutputChunk[] = [];
  private backlogBytes = 0;
  private firstSeq = 1;
  private nextSeq = 1;
  private attachment: Attachment | undefined;
  private expiry: NodeJS.Timeout | undefined;

  constructor(
    readonly request: ExecCreateRequest,
    readonly session: ExecSession,
    private readonly onExpire: (record: ExecRecord) => void,
  ) {
    for (const kind of ["stdout", "stderr"] as const) {
      const stream = kind === "stdout" ? session.stdout : session.stderr;
      stream.on("data", (data: Buffer) => this.output(kind, data));
    }
    session.exit.then(
      (exit) =>
        this.finish({
          type: "exit",
          code: exit.code,
          signal: exit.signal,
          timedOut: exit.timedOut,
          ...(exit.error ? { error: exit.error } : {}),
          ...(exit.shellStatus !== undefined ? { shellStatus: exit.shellStatus } : {}),
        }),
      // The control channel closing under an exec usually means a process of the VM died; the supervisor's
      // abortAll() with the reason that names it comes within a moment and wins over the bare channel error.
      (error: Error) => {
        const timer = setTimeout(() => this.finish({ type: "exit", code: -1, signal: null, timedOut: false, error: error.message }), SESSION_ERROR_GRACE_MS);
        timer.unref();
      },
    );
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  private output(kind: OutputKind, data: Buffer): void {
    const chunk = { seq: this.nextSeq++, kind, data };
    this.backlog.push(chunk);
    this.backlogBytes += data.length;
    while (this.backlogBytes > BACKLOG_LIMIT_BYTES && this.backlog.length > 1) {
      const dropped = this.backlog.shift()!;
      this.backlogBytes -= dropped.data.length;
      this.firstSeq = dropped.seq + 1;
    }
    if (this.attachment) this.send(this.attachment, chunk);
    this.applyBackpressure();
  }

  /** Pause the guest's output while the attached client is slow (or while detached with a full backlog). */
  private applyBackpressure(): void {
    const slow = this.attachment ? this.attachment.socket.bufferedAmount > 1024 * 1024 : this.backlogBytes >= BACKLOG_LIMIT_BYTES / 2;
    for (const stream of [this.session.stdout, this.session.stderr]) {
      if (slow && !stream.isPaused()) {
        stream.pause();
        const resume = () => {
          const still = this.attachment ? this.attachment.socket.bufferedAmount > 256 * 1024 : false;
          if (still) setTimeout(resume, 10);
          else stream.resume();
        };
        setTimeout(resume, 10);
      }
    }
  }

  private send(attachment: Attachment, chunk: OutputChunk): void {
    if (attachment.utf8) {
      const data = attachment.decoders[chunk.kind].decode(chunk.data, { stream: true });
      attachment.socket.send(JSON.stringify({ type: chunk.kind, seq: chunk.seq, data }));
    } else {
      attachment.socket.send(encodeOutput(chunk.kind, chunk.seq, chunk.data));
    }
  }

  /** Ends the exec at once with `reason` (the VM is going away): the client gets an exit frame with the error. */
  abort(reason: string): void {
    this.finish({ type: "exit", code: -1, signal: null, timedOut: false, error: reason });
  }

  private finish(exit: ExitFrame): void {
    if (this.exit) return;
    this.exit = exit;
    if (this.attachment) this.sendExit(this.attachment);
    this.scheduleExpiry();
  }

  private sendExit(attachment: Attachment): void {
    for (const kind of ["stdout", "stderr"] as const) {
      const rest = attachment.utf8 ? attachment.decoders[kind].decode() : "";
      if (rest) attachment.socket.send(JSON.stringify({ type: kind, seq: this.nextSeq - 1, data: rest }));
    }
    attachment.socket.send(JSON.stringify(this.exit));
    attachment.socket.close(1000, "exited");
  }

  private scheduleExpiry(): void {
    clearTimeout(this.expiry);
    this.expiry = setTimeout(() => this.onExpire(this), this.request.reattachGraceMs ?? DEFAULT_REATTACH_GRACE_MS);
    this.expiry.unref();
  }

  /** Attaches a client, replaying output after `since`; a previous client is replaced. */
  attach(socket: WebSocket, options: { since: number; utf8: boolean }): void {
    clearTimeout(this.expiry);
    this.detach(4000, "replaced by a new attachment");
    const attachment: Attachment = {
      socket,
      utf8: options.utf8,
      decoders: { stdout: new TextDecoder("utf-8"), stderr: new TextDecoder("utf-8") },
      missedPongs: 0,
      pingTimer: setInterval(() => {
        if (attachment.missedPongs >= 3) {
          socket.terminate();
          return;
        }
        attachment.missedPongs += 1;
        socket.ping();
      }, this.request.pingIntervalMs ?? DEFAULT_PING_MS),
    };
    this.attachment = attachment;
    socket.on("pong", () => (attachment.missedPongs = 0));
    socket.on("message", (data, isBinary) => this.fromClient(data as Buffer, isBinary));
    socket.on("close", () => {
      if (this.attachment !== attachment) return;
      clearInterval(attachment.pingTimer);
      this.attachment = undefined;
      if (this.running && this.request.onDisconnect === "kill") this.session.signal("SIGKILL");
      this.scheduleExpiry();
    });
    if (options.since + 1 < this.firstSeq) socket.send(JSON.stringify({ type: "gap", from: this.firstSeq }));
    for (const chunk of this.backlog) if (chunk.seq > options.since) this.send(attachment, chunk);
    if (this.exit) this.sendExit(attachment);
  }

  private detach(code: number, reason: string): void {
    const current = this.attachment;
    if (!current) return;
    this.attachment = undefined;
    clearInterval(current.pingTimer);
    current.socket.close(code, reason);
  }

  private fromClient(data: Buffer, isBinary: boolean): void {
    if (!this.running) return;
    if (isBinary) {
      this.session.stdin.write(data);
      return;
    }
    let message: { type?: string; rows?: number; cols?: number; signal?: string };
    try {
      message = JSON.parse(data.toString("utf8"));
    } catch {
      return;
    }
    if (message.type === "eof") this.session.stdin.end();
    else if (message.type === "resize" && message.rows && message.cols) this.session.resize(message.rows, message.cols);
    else if (message.type === "signal" && message.signal) this.signal(message.signal);
  }

  signal(signal: string): void {
    if (!this.running) throw new ExecConflictError(`exec ${this.id} has already exited`);
    this.session.signal(signal as NodeJS.Signals);
  }

  resize(rows: number, cols: number): void {
    if (!this.running) throw new ExecConflictError(`exec ${this.id} has already exited`);
    this.session.resize(rows, cols);
  }

  dispose(): void {
    clearTimeout(this.expiry);
    this.detach(1001, "supervisor stopping");
  }
}

/** Every exec of one VM, bounded in number. */
export class ExecRegistry {
  private readonly records = new Map<string, ExecRecord>();

  constructor(
    private readonly control: () => HostControl | undefined,
    readonly maxExecs = DEFAULT_MAX_EXECS,
  ) {}

  get runningCount(): number {
    let n = 0;
    for (const r of this.records.values()) if (r.running) n += 1;
    return n;
  }

  create(request: ExecCreateRequest): ExecRecord | "busy" | "not-ready" {
    const control = this.control();
    if (!control) return "not-ready";
    if (this.runningCount >= this.maxExecs) return "busy";
    const session = control.exec({
      argv: request.argv,
      ...(request.env ? { env: request.env } : {}),
      ...(request.cwd ? { cwd: request.cwd } : {}),
      ...(request.user ? { user: request.user } : {}),
      ...(request.tty ? { tty: true, rows: request.rows ?? 24, cols: request.cols ?? 80 } : {}),
      ...(request.timeoutMs ? { timeoutMs: request.timeoutMs } : {}),
    });
    // EOF right behind EXEC: the guest closes the command's stdin (or types its terminal's EOF) before it reads.
    if (request.stdin === false) session.stdin.end();
    const record = new ExecRecord(request, session, (r) => {
      r.dispose();
      this.records.delete(r.id);
    });
    this.records.set(record.id, record);
    return record;
  }

  get(id: string): ExecRecord | undefined {
    return this.records.get(id);
  }

  list(): ExecRecord[] {
    return [...this.records.values()];
  }

  /** Fails every running exec with `reason` (a child of the VM died; their guest side is gone). */
  abortAll(reason: string): void {
    for (const record of this.records.values()) if (record.running) record.abort(reason);
  }

  close(): void {
    for (const record of this.records.values()) record.dispose();
    this.records.clear();
  }
}
