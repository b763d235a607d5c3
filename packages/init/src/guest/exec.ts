// EXEC requests from the host: one stream per command, stdin/stdout/stderr
// with credit-based flow control, SIGNAL, RESIZE, timeout, EXIT.

import type { Readable } from "node:stream";
import { ChannelClosedError, type ControlChannel } from "../protocol/channel.js";
import type { ExecMessage, ExitStatus, Message } from "../protocol/messages.js";
import type { CgroupLeaf, WorkerCgroup } from "./cgroup.js";
import { statSync } from "node:fs";
import { spawnFailure } from "../portable/spawn-failure.js";
import { FIONREAD, TCGETS, TERMIOS_BYTES, TTY_EOF_POLL_MS, ttyEofStart, ttyEofStep, type TtyEof } from "../portable/tty-eof.js";
import { libc } from "./native.js";
import { killGroup, SpawnError, spawnGuestProcess, type GuestProcess } from "./process.js";
import type { Reaper } from "./reaper.js";
import { resolveUser, type ResolvedUser } from "./users.js";

export interface ExecDefaults {
  env: Record<string, string>;
  cwd: string;
  user: string | null;
}

interface Session {
  proc: GuestProcess | null;
  /** The exec's own cgroup leaf under the worker group (null without cgroups). */
  leaf: CgroupLeaf | null;
  /** Messages that arrived before the process was spawned. */
  early: Message[];
  timedOut: boolean;
  tty: boolean;
  /** The last stdin byte written (a tty's end of input after a partial line needs a second VEOF). */
  lastByte: number | undefined;
  ttyEof: TtyEof | null;
}

const TIMEOUT_KILL_AFTER_MS = 1000;
/** After a timeout, how long EXIT waits for the exec's whole tree to be gone. */
const TREE_GONE_WAIT_MS = 2000;

export function envForUser(base: Record<string, string>, user: ResolvedUser, extra: Record<string, string> = {}): Record<string, string> {
  const env = { ...base };
  if (!env.HOME || env.HOME === "/") env.HOME = user.home;
  if (user.name && !env.USER) env.USER = user.name;
  return { ...env, ...extra };
}

/** An exec that could not start, as spawnFailure reports it (Node says ENOENT for a missing cwd too: look). */
function startFailure(err: unknown, argv0: string, cwd: string): { code: number; error: string; shellStatus?: number } {
  if (!(err instanceof SpawnError) || err.errnoName === "ECGROUP") return { code: -1, error: (err as Error).message };
  let cwdOk = true;
  try {
    cwdOk = statSync(cwd).isDirectory();
  } catch {
    cwdOk = false;
  }
  return spawnFailure(argv0, cwdOk ? "exec" : "cwd", cwdOk ? err.errnoName : "ENOENT", cwd);
}

export class ExecServer {
  private readonly sessions = new Map<number, Session>();

  constructor(
    private readonly channel: ControlChannel,
    private readonly defaults: ExecDefaults,
    private readonly reaper: Reaper,
    private readonly cgroup: WorkerCgroup | null = null,
  ) {}

  get active(): number {
    return this.sessions.size;
  }

  /** Handle a message for an exec stream; returns false if it is not one. */
  handle(m: Message): boolean {
    if (m.stream === 0) return false;
    if (m.type === "EXEC") {
      if (this.sessions.has(m.stream)) {
        this.channel.send({ type: "ERROR", stream: m.stream, code: "STREAM_IN_USE", message: `stream ${m.stream} is busy` });
      } else {
        void this.start(m);
      }
      return true;
    }
    const session = this.sessions.get(m.stream);
    if (!session) return m.type === "STDIN" || m.type === "EOF" || m.type === "SIGNAL" || m.type === "RESIZE";
    if (!session.proc) {
      session.early.push(m);
      return true;
    }
    this.apply(session, session.proc, m);
    return true;
  }

  /** SIGKILL every exec and its whole tree (init is going down). */
  killAll(): void {
    for (const s of this.sessions.values()) {
      if (s.proc) killGroup(s.proc.pid, "SIGKILL");
      s.leaf?.kill();
    }
  }

  private apply(session: Session, proc: GuestProcess, m: Message): void {
    switch (m.type) {
      case "STDIN": {
        const n = m.data.byteLength;
        if (!proc.stdin || proc.stdin.destroyed || proc.stdin.writableEnded) {
          this.channel.grant(m.stream, n);
          return;
        }
        if (n > 0) session.lastByte = m.data[n - 1];
        proc.stdin.write(m.data, () => this.channel.grant(m.stream, n));
        return;
      }
      case "EOF":
        if (session.tty) {
          if (session.ttyEof || !proc.pty) return;
          session.ttyEof = ttyEofStart(session.lastByte);
          this.typeEof(session, proc);
        } else proc.stdin?.end();
        return;
      case "SIGNAL":
        try {
          killGroup(proc.pid, m.signal as NodeJS.Signals);
        } catch {}
        return;
      case "RESIZE":
        try {
          proc.pty?.resize(m.rows, m.cols);
        } catch {}
        return;
      default:
        return;
    }
  }

  /** Types VEOF once the reader drained its queue (tty-eof.ts), looking again until it is done. */
  private typeEof(session: Session, proc: GuestProcess): void {
    const state = session.ttyEof;
    const pty = proc.pty;
    if (!state || state.left <= 0 || !pty || !pty.slaveOpen || proc.stdin?.destroyed) return;
    const termios = Buffer.alloc(TERMIOS_BYTES);
    const queued = Buffer.alloc(4);
    try {
      libc().ioctlBuf(pty.slaveFd, TCGETS, termios);
      libc().ioctlBuf(pty.slaveFd, FIONREAD, queued);
    } catch {
      return;
    }
    const byte = ttyEofStep(state, termios, queued.readInt32LE(0));
    if (byte !== null) proc.stdin?.write(Buffer.of(byte));
    if (state.left > 0) setTimeout(() => this.typeEof(session, proc), TTY_EOF_POLL_MS).unref();
  }

  private async start(m: ExecMessage): Promise<void> {
    const session: Session = { proc: null, leaf: null, early: [], timedOut: false, tty: m.tty === true, lastByte: undefined, ttyEof: null };
    this.sessions.set(m.stream, session);
    let proc: GuestProcess;
    try {
      const user = resolveUser(m.user ?? this.defaults.user);
      // Born in a leaf of the worker group: the worker's limits apply, and a
      // timeout kills the whole tree (setsid'd descendants and fork bombs too).
      if (this.cgroup) {
        try {
          session.leaf = this.cgroup.execLeaf();
        } catch (err) {
          throw new Error(`exec cgroup: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
        }
      }
      proc = await spawnGuestProcess(
        {
          argv: m.argv,
          env: envForUser(this.defaults.env, user, { ...(m.tty ? { TERM: m.env?.TERM ?? "xterm-256color" } : {}), ...m.env }),
          cwd: m.cwd ?? this.defaults.cwd,
          uid: user.uid,
          gid: user.gid,
          stdio: "pipe",
          tty: m.tty ? { rows: m.rows ?? 24, cols: m.cols ?? 80 } : null,
          cgroup: session.leaf,
        },
        this.reaper,
      );
    } catch (err) {
      this.sessions.delete(m.stream);
      if (session.leaf) this.cgroup?.releaseExecLeaf(session.leaf);
      this.finish(m.stream, { signal: null, timedOut: false, ...startFailure(err, m.argv[0]!, m.cwd ?? this.defaults.cwd) });
      return;
    }
    session.proc = proc;
    this.channel.send({ type: "STARTED", stream: m.stream, pid: proc.pid });
    proc.stdin?.on("error", () => {});
    for (const early of session.early.splice(0)) this.apply(session, proc, early);

    let timer: NodeJS.Timeout | null = null;
    if (m.timeoutMs !== undefined && m.timeoutMs > 0) {
      timer = setTimeout(() => {
        session.timedOut = true;
        killGroup(proc.pid, "SIGTERM");
        timer = setTimeout(() => {
          killGroup(proc.pid, "SIGKILL");
          session.leaf?.kill();
        }, TIMEOUT_KILL_AFTER_MS);
      }, m.timeoutMs);
    }

    const pumps = [this.pump(m.stream, "STDOUT", proc.stdout, session.tty)];
    if (proc.stderr) pumps.push(this.pump(m.stream, "STDERR", proc.stderr, false));
    const status = await proc.exited;
    if (timer) clearTimeout(timer);
    // Init's slave fd must not keep the master from reading end-of-file (EIO).
    proc.pty?.closeSlave();
    if (session.timedOut && session.leaf) {
      // A timed-out exec takes its whole tree with it, before EXIT.
      session.leaf.kill();
      await session.leaf.waitEmpty(TREE_GONE_WAIT_MS);
    }
    // Output written just before exit is still in the pipe or pty: drain it,
    // but do not wait forever for a background process that kept the pipe open.
    await Promise.race([Promise.all(pumps), new Promise((r) => setTimeout(r, session.tty ? 500 : 2000))]);
    proc.stdout?.destroy();
    proc.stderr?.destroy();
    if (session.tty) proc.pty?.master.destroy();
    this.sessions.delete(m.stream);
    // Background processes an exec started may outlive it (in its leaf, still limited).
    if (session.leaf) this.cgroup?.releaseExecLeaf(session.leaf);
    this.finish(m.stream, { ...status, timedOut: session.timedOut });
  }

  private finish(stream: number, status: ExitStatus): void {
    this.channel.send({ type: "EXIT", stream, ...status });
    this.channel.closeStream(stream);
  }

  private async pump(stream: number, type: "STDOUT" | "STDERR", source: Readable | null, tty: boolean): Promise<void> {
    if (!source) return;
    try {
      for await (const chunk of source) await this.channel.sendData(stream, type, chunk as Buffer);
    } catch (err) {
      // EIO on a pty master means every slave fd closed: the normal end of a tty session.
      if ((err as NodeJS.ErrnoException).code === "EIO" && tty) return;
      if (err instanceof ChannelClosedError) {
        source.destroy();
        return;
      }
      source.destroy();
    }
  }
}
