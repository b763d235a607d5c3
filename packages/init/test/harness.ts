// Runs init (dist/init.krun, the static ELF) as PID 1 in a fresh PID + mount
// (+ cgroup, UTS) namespace, chrooted into a scratch rootfs built in a temp dir
// that holds busybox-static, /init.krun and nothing else: no libc at all.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmdirSync,
  statSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HostControl } from "../src/protocol/host.js";

export const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The guest init (QuickJS + iii:sys, one static ELF), `pnpm --filter @iii/init build:static`. */
export const INIT_BINARY = join(PACKAGE_DIR, "dist", "init.krun");
const BUSYBOX = "/usr/bin/busybox";

export function canRunNamespaces(): string | null {
  if (process.getuid?.() !== 0) return "needs root for unshare --pid --mount";
  if (!existsSync("/usr/bin/unshare")) return "util-linux unshare missing";
  if (!existsSync(BUSYBOX)) return "busybox-static missing";
  if (!existsSync(INIT_BINARY)) return `run "pnpm --filter @iii/init build:static" first (${INIT_BINARY} missing)`;
  return null;
}

export interface Rootfs {
  base: string;
  root: string;
  cleanup(): void;
}

export function makeRootfs(): Rootfs {
  const base = mkdtempSync(join(tmpdir(), `iii-init-test-${process.pid}-`));
  const root = join(base, "root");
  for (const d of ["bin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "home/app", "app", "data"]) {
    mkdirSync(join(root, d), { recursive: true });
  }
  copyFileSync(BUSYBOX, join(root, "bin", "busybox"));
  chmodSync(join(root, "bin", "busybox"), 0o755);
  const applets = spawnSync(BUSYBOX, ["--list"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
  for (const applet of applets) {
    if (applet !== "busybox") symlinkSync("busybox", join(root, "bin", applet));
  }
  writeFileSync(
    join(root, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
  );
  writeFileSync(join(root, "etc", "group"), "root:x:0:\ntty:x:5:\napp:x:1000:\nstaff:x:50:\nnogroup:x:65534:\n");
  chownSync(join(root, "home", "app"), 1000, 1000);
  chownSync(join(root, "app"), 1000, 1000);
  copyFileSync(INIT_BINARY, join(root, "init.krun"));
  chmodSync(join(root, "init.krun"), 0o755);
  return { base, root, cleanup: () => rmSync(base, { recursive: true, force: true }) };
}

export interface InitResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface InitRun {
  proc: ChildProcess;
  rootfs: Rootfs;
  /** Connected control channel (when `control` was requested). */
  host: HostControl | null;
  /** The host end of the control connection under `host` (a test may pause it to play a host that stops reading). */
  controlSocket: Socket | null;
  result: Promise<InitResult>;
  /** Host pids of every process in the run's PID namespace except init. */
  namespacePids(): number[];
}

export interface RunOptions {
  env: Record<string, string>;
  control?: boolean;
  rootfs?: Rootfs;
  /** Extra unshare flags, e.g. ["--net"]. */
  unshare?: string[];
  /** Shell commands run in the namespace before init (host tools, before chroot). */
  prelude?: string;
  timeoutMs?: number;
  /** Leave III_INIT_CONTROL unset: init looks for the iii.control port itself. */
  autodetectControl?: boolean;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export async function startInit(options: RunOptions): Promise<InitRun> {
  const rootfs = options.rootfs ?? makeRootfs();
  const r = rootfs.root;
  const script = [options.prelude ?? "true", `exec /usr/sbin/chroot ${shellQuote(r)} /init.krun`].join(" && ");

  let server: Server | null = null;
  let accepted: Promise<Socket> | null = null;
  const env: Record<string, string> = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ...options.env };
  if (options.control) {
    const sockPath = join(r, "control.sock");
    server = createServer();
    await new Promise<void>((res) => server!.listen(sockPath, res));
    accepted = new Promise<Socket>((res) => server!.once("connection", res));
    env.III_INIT_CONTROL = "unix:/control.sock";
  } else if (!options.autodetectControl) {
    env.III_INIT_CONTROL ??= "none";
  }
  const unshareArgs = ["--pid", "--fork", "--kill-child", "--mount", "--cgroup", "--uts", "--propagation", "private", ...(options.unshare ?? []), "/bin/sh", "-c", script];
  // On a pure cgroup2 host (no v1 memory hierarchy to fall back to) the run gets
  // a cgroup of its own, so that init is alone in its cgroup namespace root and
  // can delegate controllers to its worker group.
  const ownCgroup = isPureCgroup2() ? mkdtempSync("/sys/fs/cgroup/iii-init-test-") : null;
  const proc = ownCgroup
    ? spawn("/bin/sh", ["-c", `echo $$ > ${shellQuote(ownCgroup)}/cgroup.procs && exec /usr/bin/unshare "$@"`, "sh", ...unshareArgs], {
        env,
        stdio: ["ignore", "pipe", "pipe"],
      })
    : spawn("/usr/bin/unshare", unshareArgs, { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timeoutMs = options.timeoutMs ?? 60_000;
  const result = new Promise<InitResult>((res) => {
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
    proc.on("close", async (code, signal) => {
      clearTimeout(timer);
      server?.close();
      if (ownCgroup) await removeCgroup(ownCgroup);
      res({ code, signal, stdout, stderr });
    });
  });
  let host: HostControl | null = null;
  let controlSocket: Socket | null = null;
  if (accepted) {
    const sock = await Promise.race([
      accepted,
      result.then((res) => {
        throw new Error(`init exited before connecting: ${JSON.stringify(res)}`);
      }),
    ]);
    controlSocket = sock;
    host = HostControl.attach(sock);
    host.on("error", () => {});
  }
  return {
    proc,
    rootfs,
    host,
    controlSocket,
    result,
    namespacePids: () => descendants(proc.pid!).filter((p) => p !== initPid(proc.pid!)),
  };
}

/**
 * Remove empty worker cgroups an init created on the shared host hierarchy but
 * could not remove because a failing test SIGKILLed it. rmdir only succeeds on
 * empty groups, so a live one is never touched.
 */
export function sweepWorkerCgroups(sinceMs: number): void {
  const roots = new Set(["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]);
  for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
    const [, ctrls, path] = line.split(":");
    if (!ctrls || path === undefined) continue;
    for (const dir of [ctrls, ...ctrls.split(",")]) {
      if (["memory", "pids", "cpu", "cpu,cpuacct"].includes(dir)) roots.add(join("/sys/fs/cgroup", dir, path));
    }
  }
  const removeTree = (dir: string): void => {
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeTree(join(dir, e.name));
      rmdirSync(dir);
    } catch {}
  };
  for (const root of roots) {
    let entries: string[] = [];
    try {
      entries = readdirSync(root).filter((e) => e.startsWith("iii-worker-") || e.startsWith("iii-init-"));
    } catch {}
    for (const e of entries) {
      try {
        if (statSync(join(root, e)).mtimeMs >= sinceMs) removeTree(join(root, e));
      } catch {}
    }
  }
}

function isPureCgroup2(): boolean {
  return existsSync("/sys/fs/cgroup/cgroup.controllers");
}

async function removeCgroup(dir: string): Promise<void> {
  // Children first (what a killed init could not remove itself).
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) await removeCgroup(join(dir, entry.name));
  }
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EBUSY") return;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function childrenOf(pid: number): number[] {
  try {
    const out: number[] = [];
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const c = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim();
      if (c) out.push(...c.split(" ").map(Number));
    }
    return out;
  } catch {
    return [];
  }
}

/** Host pid of init: unshare's forked child. */
function initPid(unsharePid: number): number | undefined {
  return childrenOf(unsharePid)[0];
}

export function descendants(pid: number): number[] {
  const out: number[] = [];
  const stack = [...childrenOf(pid)];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...childrenOf(p));
  }
  return out;
}

/** Run to completion and collect output (no control channel). */
export async function runInit(options: RunOptions): Promise<InitResult & { rootfs: Rootfs }> {
  const run = await startInit(options);
  const res = await run.result;
  return { ...res, rootfs: run.rootfs };
}

export async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
