// The parent's side of a FUSE server in a child process (isolation "process"): spawn it, hand it the mount,
// track it. Node builtins only (no fuse-native, no koffi), so a parent that mounts this way, such as a
// worker's supervisor, loads little code; also the package's `@iii/filesystem/client` entry.
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { FilesystemError, type FilesystemErrorCode } from "../errors.js";
import { findMount } from "../core/mountinfo.js";
import { detachMount, readMountTable } from "./detach.js";
import type { MountStats } from "./fuse-shell.js";
import type { MountHandle, MountOptions, ServerMemory, UnmountReason } from "./mount.js";

export type { MountHandle, MountOptions, ServerMemory, UnmountReason } from "./mount.js";
export type { MountStats } from "./fuse-shell.js";
export { FilesystemError, type FilesystemErrorCode } from "../errors.js";

export function findServerScript(): string | null {
  // Built: dist/server.js next to this chunk. From sources (tests): the built one.
  for (const rel of ["./server.js", "../../dist/server.js"]) {
    const p = new URL(rel, import.meta.url);
    if (fs.existsSync(p)) return p.pathname;
  }
  return null;
}

/** The setattr shim (src/native/setattr-shim.c) built next to dist/server.js, if any. */
export function setattrShimPath(): string | null {
  const server = findServerScript();
  const shim = server && path.join(path.dirname(server), "libiii-setattr-shim.so");
  return shim && fs.existsSync(shim) ? shim : null;
}

function serverScript(): string {
  const p = findServerScript();
  if (!p) throw new FilesystemError("MountFailed", "dist/server.js is missing: build @iii/filesystem first");
  return p;
}

type ServerMessage =
  | { type: "mounted"; pid: number }
  | { type: "error"; code: FilesystemErrorCode; message: string }
  | { type: "stats"; stats: MountStats }
  | { type: "memory"; memory: ServerMemory }
  | { type: "unmounted"; external: boolean; code?: FilesystemErrorCode; message?: string };

/**
 * Node flags of the server process: none. Measured on an idle server after some traffic (RSS / PSS MiB, 15 s):
 * no flags 60.4 / 30.1, --max-semi-space-size=1 58.7 / 20.6, --jitless 55.9 / 20.4, --lite-mode 52.8 / 17.5.
 * The saving is a few MiB against a 42.7 MiB floor of any idle Node process (31 MiB of it node's own text), and
 * the compiler-less modes slow the requests the JS side answers (layered trees).
 */
export const SERVER_NODE_FLAGS: readonly string[] = [];

/**
 * A FUSE server process started ahead of its mount: its Node start-up and module loading overlap whatever the
 * parent does meanwhile (a supervisor loading its own code, planning the VM). Use it once with `mount()`, or
 * `dispose()` it; a parent that dies takes it along (it exits on the IPC channel's disconnect).
 */
export class MountServer {
  readonly pid: number;
  private used = false;

  private constructor(private readonly child: ChildProcess) {
    this.pid = child.pid ?? -1;
  }

  static start(): MountServer {
    const env = { ...process.env };
    // Preloaded into the server only: restores mtime-only/atime-only updates (README).
    const shim = setattrShimPath();
    if (shim && !(env.LD_PRELOAD ?? "").includes(shim)) env.LD_PRELOAD = env.LD_PRELOAD ? `${shim}:${env.LD_PRELOAD}` : shim;
    const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, serverScript()], { cwd: "/", env, stdio: ["ignore", "inherit", "inherit", "ipc"], serialization: "advanced" });
    // Until mount() takes it over, a server that dies (or cannot start) is only noted, never an unhandled error.
    child.on("error", () => {});
    return new MountServer(child);
  }

  /** Mounts `options` in this server and resolves once the mount is usable (as mountPassthrough does). */
  async mount(options: MountOptions): Promise<MountHandle> {
    if (this.used) throw new FilesystemError("InvalidOptions", "a MountServer serves one mount");
    this.used = true;
    const { child } = this;
    const mountpoint = path.resolve(options.mountpoint);
    const timeoutMs = options.mountTimeoutMs ?? DEFAULT_MOUNT_TIMEOUT_MS;
    const mountedBefore = findMount(readMountTable(), mountpoint)?.mountId;
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        // A server that neither answers nor exits (stopped, or blocked in a system call) must not hold mount() forever.
        timer = setTimeout(() => {
          reject(new FilesystemError("MountFailed", `the FUSE server (pid ${this.pid}) did not mount ${mountpoint} within ${timeoutMs} ms; killed it\n${processThreadsReport(this.pid)}`));
        }, timeoutMs);
        if (child.exitCode !== null || child.signalCode !== null || !child.connected) {
          reject(new FilesystemError("MountFailed", `FUSE server exited (${child.signalCode ?? child.exitCode}) before mounting`));
          return;
        }
        const onExit = (code: number | null, signal: NodeJS.Signals | null): void => reject(new FilesystemError("MountFailed", `FUSE server exited (${signal ?? code}) before mounting`));
        child.once("exit", onExit);
        child.on("message", function onMessage(m: ServerMessage) {
          if (m.type === "mounted") {
            child.off("exit", onExit);
            child.off("message", onMessage);
            resolve();
          } else if (m.type === "error") {
            child.off("exit", onExit);
            reject(new FilesystemError(m.code, m.message));
          }
        });
        child.send({ type: "mount", options: { ...options, mountpoint }, statsIntervalMs: options.statsPushMs ?? 250 });
      });
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await new Promise<void>((r) => {
          child.once("exit", () => r());
          setTimeout(r, 5000).unref();
        });
      }
      // A mount the server made before it stopped answering would be left unanswered: detach it.
      const now = findMount(readMountTable(), mountpoint);
      if (now && now.mountId !== mountedBefore && now.fsType.startsWith("fuse")) await detachMount(mountpoint);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return new ChildMount(mountpoint, child, options.unmountTimeoutMs ?? DEFAULT_UNMOUNT_TIMEOUT_MS);
  }

  /** Ends a server that was never used (a no-op after mount()). */
  dispose(): void {
    if (this.used) return;
    this.used = true;
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

/** How long mount() waits for the child server by default (a mount takes well under a second; INIT's own wait is 15 s). */
export const DEFAULT_MOUNT_TIMEOUT_MS = 30_000;

/** How long unmount() waits for the child server by default (a clean unmount takes well under a second). */
export const DEFAULT_UNMOUNT_TIMEOUT_MS = 10_000;

/**
 * What the threads of process `pid` are doing, from /proc: per thread its name, state, wait channel, and the
 * kernel stack when readable (root). For an unmount that does not finish: where the server waits.
 */
export function processThreadsReport(pid: number): string {
  const read = (p: string): string | null => {
    try {
      return fs.readFileSync(p, "utf8");
    } catch {
      return null;
    }
  };
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`).sort((a, b) => Number(a) - Number(b));
  } catch (err) {
    return `process ${pid}: no /proc entry (${(err as NodeJS.ErrnoException).code ?? err})`;
  }
  const lines = [`process ${pid}, ${tids.length} threads:`];
  for (const tid of tids) {
    const dir = `/proc/${pid}/task/${tid}`;
    const stat = read(`${dir}/stat`);
    // "tid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'.
    const close = stat?.lastIndexOf(")") ?? -1;
    const comm = stat && close > 0 ? stat.slice(stat.indexOf("(") + 1, close) : "?";
    const state = stat && close > 0 ? stat.slice(close + 2, close + 3) : "?";
    const wchan = read(`${dir}/wchan`)?.trim() || "-";
    const syscall = read(`${dir}/syscall`)?.trim().split(" ")[0] ?? "?";
    lines.push(`  ${tid} ${comm} state=${state} wchan=${wchan} syscall=${syscall}`);
    const stack = read(`${dir}/stack`)?.trim();
    if (stack) for (const frame of stack.split("\n").slice(0, 12)) lines.push(`      ${frame}`);
  }
  return lines.join("\n");
}

/** Mounts in a fresh child FUSE server (mountPassthrough's isolation "process"). */
export function mountInChild(options: MountOptions): Promise<MountHandle> {
  return MountServer.start().mount(options);
}

/** Detaches `mountpoint` if it is still mounted; says what it found. */
async function lazyUnmount(mountpoint: string): Promise<string> {
  const { found, gone, detail } = await detachMount(mountpoint);
  if (!found) return "already gone";
  return gone ? "lazily unmounted" : `still mounted (${detail})`;
}

class ChildMount extends EventEmitter implements MountHandle {
  readonly mountpoint: string;
  readonly serverPid: number;
  readonly closed: Promise<UnmountReason>;
  private state: "mounted" | "unmounting" | "gone" = "mounted";
  private lastStats: MountStats = { ops: {}, errors: {}, bytesRead: 0, bytesWritten: 0 };
  private resolveClosed!: (r: UnmountReason) => void;
  private readonly child: ChildProcess;
  private readonly memoryWaiters: { resolve: (m: ServerMemory) => void; reject: (e: Error) => void }[] = [];

  constructor(mountpoint: string, child: ChildProcess, private readonly unmountTimeoutMs: number) {
    super();
    this.mountpoint = mountpoint;
    this.child = child;
    this.serverPid = child.pid ?? -1;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    child.on("message", (m: ServerMessage) => {
      if (m.type === "memory") this.memoryWaiters.shift()?.resolve(m.memory);
      if (m.type === "stats") this.lastStats = m.stats;
      else if (m.type === "unmounted" && m.external) {
        this.finish({ external: true, error: new FilesystemError(m.code ?? "ExternalUnmount", m.message ?? "unmounted externally") });
      }
    });
    child.on("exit", (code, signal) => {
      if (this.state === "gone") return;
      const error = new FilesystemError("ServerExited", `the FUSE server process for ${mountpoint} exited (${signal ?? `code ${code}`})`);
      this.finish(this.state === "unmounting" ? { external: false } : { external: true, error });
    });
  }

  get mounted(): boolean {
    return this.state === "mounted";
  }

  memoryAfterGc(): Promise<ServerMemory> {
    if (this.state !== "mounted" || !this.child.connected) {
      return Promise.reject(new FilesystemError("ServerExited", `the FUSE server for ${this.mountpoint} is not running`));
    }
    return new Promise((resolve, reject) => {
      this.memoryWaiters.push({ resolve, reject });
      this.child.send({ type: "memory" });
    });
  }

  stats(): MountStats {
    const s = this.lastStats;
    return {
      ops: { ...s.ops },
      errors: { ...s.errors },
      bytesRead: s.bytesRead,
      bytesWritten: s.bytesWritten,
      ...(s.pinnedFiles !== undefined ? { pinnedFiles: s.pinnedFiles } : {}),
      ...(s.shimOps !== undefined ? { shimOps: { ...s.shimOps } } : {}),
    };
  }

  private finish(reason: UnmountReason): void {
    if (this.state === "gone") return;
    this.state = "gone";
    for (const w of this.memoryWaiters.splice(0)) w.reject(new FilesystemError("ServerExited", `the FUSE server for ${this.mountpoint} is gone`));
    this.resolveClosed(reason);
    this.emit("unmounted", reason);
    if (reason.external && this.listenerCount("error") > 0) this.emit("error", reason.error);
  }

  async unmount(): Promise<void> {
    if (this.state !== "mounted") {
      await this.closed;
      return;
    }
    this.state = "unmounting";
    if (this.child.connected) this.child.send({ type: "unmount" });
    else this.child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">((r) => (timer = setTimeout(() => r("expired"), this.unmountTimeoutMs)));
    const outcome = await Promise.race([this.closed, expired]);
    clearTimeout(timer);
    if (outcome !== "expired") return;
    // The server did not finish: say where it waits (before killing it), then end it and leave no mount behind.
    const threads = processThreadsReport(this.serverPid);
    this.child.kill("SIGKILL");
    const detached = await lazyUnmount(this.mountpoint);
    const exited = await Promise.race([this.closed.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5000).unref())]);
    const error = new FilesystemError(
      "UnmountTimeout",
      `the FUSE server (pid ${this.serverPid}) did not unmount ${this.mountpoint} within ${this.unmountTimeoutMs} ms; ` +
        `killed it${exited ? "" : " (it has not exited yet)"}, mount ${detached}\n${threads}`,
    );
    process.emitWarning(error.message, { code: "IiiUnmountTimeout" });
    throw error;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.unmount();
  }
}
