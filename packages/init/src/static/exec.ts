// EXEC requests on the static init: one stream per command, stdin with credit
// returned as it is written, stdout/stderr pumped with the stream's credit,
// SIGNAL, RESIZE, timeout (SIGTERM, SIGKILL 1 s later), EXIT. A tty exec gets
// a pty as its controlling terminal in a session of its own.
import * as os from "os";
import * as sys from "iii:sys";
import type { ExecMessage, ExitStatus, Message } from "../protocol/messages.js";
import { resolveUserSpec, type ResolvedUser } from "../portable/users.js";
import { spawnFailure } from "../portable/spawn-failure.js";
import { FIONREAD, TCGETS, TERMIOS_BYTES, TTY_EOF_POLL_MS, ttyEofStart, ttyEofStep, type TtyEof } from "../portable/tty-eof.js";
import type { CgroupLeaf, WorkerCgroup } from "../portable/cgroup.js";
import type { Channel } from "./channel.js";
import { Pump, pumpsDone } from "./channel.js";
import { checkPair, decodeWaitStatus, readText, SIGNALS, spawnStage } from "./sys.js";

const TIMEOUT_KILL_AFTER_MS = 1000;
/** What execs are born with (init keeps -1000). */
const CHILD_OOM_SCORE_ADJ = 500;
const EAGAIN = 11;

export interface ExecDefaults {
  env: Record<string, string>;
  cwd: string;
  user: string | null;
  /** The bounding-set mask execs keep, the workload's (contract/capabilities.ts capabilityMask). */
  capabilities: number;
}

export function envForUser(base: Record<string, string>, user: ResolvedUser, extra: Record<string, string> = {}): Record<string, string> {
  const env = { ...base };
  if (!env.HOME || env.HOME === "/") env.HOME = user.home;
  if (user.name && !env.USER) env.USER = user.name;
  return { ...env, ...extra };
}

interface Session {
  stream: number;
  pid: number;
  tty: boolean;
  /** Where STDIN goes (the pipe's write end, or a dup of the pty master); -1 once closed. */
  stdinFd: number;
  queue: Array<{ data: Uint8Array; off: number }>;
  eof: boolean;
  master: number;
  /** A tty exec's slave, held by init to watch its input queue and mode (tty-eof.ts); -1 once closed. */
  slave: number;
  /** The last stdin byte written (a tty's end of input after a partial line needs a second VEOF). */
  lastByte: number | undefined;
  /** A tty's end of input being typed. */
  ttyEof: TtyEof | null;
  timedOut: boolean;
  timer: unknown;
  pumps: Pump[];
  /** The exec's own leaf under the worker group (null without cgroups). */
  leaf: CgroupLeaf | null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => os.setTimeout(r, ms));

export class ExecServer {
  private readonly sessions = new Map<number, Session>();

  constructor(
    private readonly channel: Channel,
    private readonly defaults: ExecDefaults,
    /** Register a child: called with its wait status once reaped. */
    private readonly watch: (pid: number, onExit: (status: number) => void) => void,
    private readonly cgroup: WorkerCgroup | null = null,
  ) {}

  /** Handle a message for an exec stream; returns false if it is not one. */
  handle(m: Message): boolean {
    if (m.stream === 0) return false;
    if (m.type === "EXEC") {
      if (this.sessions.has(m.stream)) this.channel.send({ type: "ERROR", stream: m.stream, code: "STREAM_IN_USE", message: `stream ${m.stream} is busy` });
      else this.start(m);
      return true;
    }
    const s = this.sessions.get(m.stream);
    if (!s) {
      if (m.type === "STDIN") this.channel.grant(m.stream, m.data.byteLength);
      return m.type === "STDIN" || m.type === "EOF" || m.type === "SIGNAL" || m.type === "RESIZE";
    }
    switch (m.type) {
      case "STDIN":
        if (s.stdinFd < 0) this.channel.grant(m.stream, m.data.byteLength);
        else {
          s.queue.push({ data: m.data, off: 0 });
          this.flush(s);
        }
        return true;
      case "EOF":
        if (s.ttyEof) return true;
        s.eof = true;
        this.flush(s);
        return true;
      case "SIGNAL": {
        const n = SIGNALS[m.signal];
        if (n !== undefined) os.kill(-s.pid, n);
        return true;
      }
      case "RESIZE":
        if (s.master >= 0) sys.setWinsize(s.master, m.rows, m.cols);
        return true;
      default:
        return true;
    }
  }

  /** SIGKILL every exec's group (init is going down). */
  killAll(): void {
    for (const s of this.sessions.values()) {
      os.kill(-s.pid, 9);
      s.leaf?.kill();
    }
  }

  private flush(s: Session): void {
    while (s.stdinFd >= 0 && s.queue.length > 0) {
      const head = s.queue[0]!;
      const n = os.write(s.stdinFd, head.data.buffer as ArrayBuffer, head.data.byteOffset + head.off, head.data.byteLength - head.off);
      if (n === -EAGAIN) {
        os.setWriteHandler(s.stdinFd, () => this.flush(s));
        return;
      }
      if (n < 0) {
        // EPIPE etc.: the reader is gone; what is left is consumed unread.
        this.closeStdin(s);
        return;
      }
      head.off += n;
      s.lastByte = head.data[head.off - 1];
      if (head.off === head.data.byteLength) {
        s.queue.shift();
        this.channel.grant(s.stream, head.data.byteLength);
      }
    }
    if (s.stdinFd >= 0) os.setWriteHandler(s.stdinFd, null);
    if (s.eof && s.queue.length === 0 && s.stdinFd >= 0) {
      s.eof = false;
      if (s.tty) {
        s.ttyEof = ttyEofStart(s.lastByte);
        this.typeEof(s);
      } else this.closeStdin(s);
    }
  }

  /** Types VEOF once the reader drained its queue (tty-eof.ts), looking again until it is done. */
  private typeEof(s: Session): void {
    const state = s.ttyEof;
    if (!state || state.left <= 0 || s.stdinFd < 0 || s.slave < 0) return;
    const termios = new Uint8Array(TERMIOS_BYTES);
    const queued = new Uint8Array(4);
    if (sys.ioctlBuf(s.slave, TCGETS, termios.buffer as ArrayBuffer) < 0 || sys.ioctlBuf(s.slave, FIONREAD, queued.buffer as ArrayBuffer) < 0) return;
    const byte = ttyEofStep(state, termios, new DataView(queued.buffer).getInt32(0, true));
    if (byte !== null) os.write(s.stdinFd, Uint8Array.of(byte).buffer as ArrayBuffer, 0, 1);
    if (state.left > 0) os.setTimeout(() => this.typeEof(s), TTY_EOF_POLL_MS);
  }

  private closeStdin(s: Session): void {
    if (s.stdinFd < 0) return;
    os.setWriteHandler(s.stdinFd, null);
    os.close(s.stdinFd);
    s.stdinFd = -1;
    for (const q of s.queue.splice(0)) this.channel.grant(s.stream, q.data.byteLength);
  }

  private start(m: ExecMessage): void {
    const toClose: number[] = [];
    const fail = (error: string): void => {
      for (const fd of toClose) os.close(fd);
      this.finish(m.stream, { code: -1, signal: null, timedOut: false, error });
    };
    let user: ResolvedUser;
    try {
      user = resolveUserSpec(m.user ?? this.defaults.user, readText("/etc/passwd") ?? "", () => readText("/etc/group") ?? "");
    } catch (err) {
      fail((err as Error).message);
      return;
    }
    const tty = m.tty === true;
    const env = envForUser(this.defaults.env, user, { ...(tty ? { TERM: m.env?.TERM ?? "xterm-256color" } : {}), ...m.env });
    let childFds: [number, number, number];
    let stdinFd: number;
    let outFds: number[];
    let master = -1;
    let heldSlave = -1;
    try {
      if (tty) {
        const [mfd, slave] = checkPair("openpty", sys.openpty(m.rows ?? 24, m.cols ?? 80));
        master = mfd;
        heldSlave = os.dup(slave);
        toClose.push(slave, heldSlave);
        childFds = [slave, slave, slave];
        stdinFd = os.dup(mfd);
        outFds = [mfd];
      } else {
        const [inR, inW] = checkPair("pipe", sys.pipe());
        const [outR, outW] = checkPair("pipe", sys.pipe());
        const [errR, errW] = checkPair("pipe", sys.pipe());
        toClose.push(inR, outW, errW);
        childFds = [inR, outW, errW];
        stdinFd = inW;
        outFds = [outR, errR];
      }
    } catch (err) {
      fail((err as Error).message);
      return;
    }
    sys.setNonBlock(stdinFd, 1);
    // Born in a leaf of the worker group: the worker's limits apply, and a
    // timeout kills the whole tree (setsid'd descendants and fork bombs too).
    let leaf: CgroupLeaf | null = null;
    if (this.cgroup) {
      try {
        leaf = this.cgroup.execLeaf();
      } catch (err) {
        os.close(stdinFd);
        for (const fd of outFds) os.close(fd);
        fail(`exec cgroup: ${(err as { code?: string }).code ?? (err as Error).message}`);
        return;
      }
    }
    const spawn = (): number | [number, number] => sys.spawn(
      m.argv,
      Object.entries(env).map(([k, v]) => `${k}=${v}`),
      {
        cwd: m.cwd ?? this.defaults.cwd,
        uid: user.uid,
        gid: user.gid,
        groups: [user.gid],
        setsid: true,
        ctty: tty,
        oomScoreAdj: CHILD_OOM_SCORE_ADJ,
        // The child joins the exec's leaf itself: init never enters it.
        cgroupProcs: leaf?.procsFiles() ?? [],
        confine: true,
        capabilities: this.defaults.capabilities,
        stdin: childFds[0],
        stdout: childFds[1],
        stderr: childFds[2],
      },
    );
    const r = spawn();
    // Spawned: init keeps its own slave fd (the child has the others).
    for (const fd of toClose) if (fd !== heldSlave || typeof r !== "number" || r < 0) os.close(fd);
    if (typeof r !== "number" || r < 0) {
      if (leaf) this.cgroup?.releaseExecLeaf(leaf);
      const e = typeof r === "number" ? r : r[0];
      os.close(stdinFd);
      for (const fd of outFds) os.close(fd);
      const failure = spawnFailure(m.argv[0]!, spawnStage(r), sys.errnoName(e), m.cwd ?? this.defaults.cwd);
      this.finish(m.stream, { ...failure, signal: null, timedOut: false });
      return;
    }
    const s: Session = { stream: m.stream, pid: r, tty, stdinFd, queue: [], eof: false, master, slave: heldSlave, lastByte: undefined, ttyEof: null, timedOut: false, timer: null, pumps: [], leaf };
    this.sessions.set(m.stream, s);
    this.channel.send({ type: "STARTED", stream: m.stream, pid: r });
    s.pumps = outFds.map((fd, i) => new Pump(fd, m.stream, i === 0 ? "STDOUT" : "STDERR", this.channel, tty));
    if (m.timeoutMs !== undefined && m.timeoutMs > 0) {
      s.timer = os.setTimeout(() => {
        s.timedOut = true;
        os.kill(-s.pid, 15);
        s.timer = os.setTimeout(() => {
          os.kill(-s.pid, 9);
          s.leaf?.kill();
        }, TIMEOUT_KILL_AFTER_MS);
      }, m.timeoutMs);
    }
    this.watch(r, (status) => void this.exited(s, status));
  }

  private async exited(s: Session, status: number): Promise<void> {
    if (s.timer) os.clearTimeout(s.timer);
    if (s.timedOut) {
      // A timed-out exec takes its whole tree with it, before EXIT.
      os.kill(-s.pid, 9);
      if (s.leaf) {
        s.leaf.kill();
        await s.leaf.waitEmpty(2000);
      } else {
        const deadline = os.now() + 2000;
        while (os.kill(-s.pid, 0) === 0 && os.now() < deadline) await sleep(20);
      }
    }
    // Init's slave fd must not keep the master from reading end-of-file (EIO).
    if (s.slave >= 0) {
      os.close(s.slave);
      s.slave = -1;
    }
    // Output written just before exit is still in the pipe or pty: drain it,
    // but do not wait forever for a background process that kept it open.
    await pumpsDone(s.pumps, s.tty ? 500 : 2000);
    for (const p of s.pumps) p.end();
    this.closeStdin(s);
    this.sessions.delete(s.stream);
    this.finish(s.stream, { ...decodeWaitStatus(status), timedOut: s.timedOut });
    // After EXIT has left: removing this leaf and making the next exec's are not on any exec's path.
    // Background processes an exec started may outlive it (in its leaf, still limited).
    if (s.leaf) this.cgroup?.releaseExecLeaf(s.leaf);
    this.cgroup?.prepareExecLeaf();
  }

  private finish(stream: number, status: ExitStatus): void {
    this.channel.send({ type: "EXIT", stream, ...status });
    this.channel.closeStream(stream);
  }
}
