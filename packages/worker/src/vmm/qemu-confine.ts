import { execFile } from "node:child_process";
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

/**
 * What QEMU may do once it has set the VM up. QEMU parses every byte the guest gives its devices, so a guest that
 * finds a bug there runs code as the QEMU process: as root on a host where the supervisor is root. Confined, it
 * runs under a seccomp filter (no fork or exec of programs, no obsolete or scheduler/priority system calls), and,
 * when QEMU starts as root, as an unprivileged uid/gid of its own (no capabilities, no supplementary groups) inside
 * an empty, read-only directory (chroot): no host file is reachable by path, none writable. QEMU opens everything
 * it needs (kernel, sockets, guest memory) before it drops, so the VM runs unchanged.
 */
export interface QemuConfinement {
  seccomp: boolean;
  /** Only when QEMU starts as root (it then changes to this uid and gid itself). */
  user?: { uid: number; gid: number };
  /** An empty directory QEMU chroots into (root only). */
  chrootDir?: string;
}

/**
 * First uid/gid of the range QEMU processes run as (`QEMU_UID_COUNT` of them, each leased host-wide to one live
 * QEMU: host/qemu-uid-lease.ts). High enough to be no user's: `III_QEMU_UID_BASE` moves it.
 */
export const DEFAULT_QEMU_UID_BASE = 0x7ffe0000;
export const QEMU_UID_COUNT = 65536;
const MIN_QEMU_UID_BASE = 65536;

export function qemuUidBase(env: NodeJS.ProcessEnv): number {
  const raw = env.III_QEMU_UID_BASE;
  if (raw === undefined || raw === "") return DEFAULT_QEMU_UID_BASE;
  const n = Number(raw);
  // Below 65536 live the system's and the users' ids (the lease skips /etc/passwd's, not LDAP's); the top of the
  // 32-bit range is (uid_t)-1, "no change".
  if (!/^\d+$/.test(raw) || n < MIN_QEMU_UID_BASE || n + QEMU_UID_COUNT >= 0xffffffff) {
    throw new RangeError(`III_QEMU_UID_BASE must be an integer from ${MIN_QEMU_UID_BASE} to ${0xffffffff - QEMU_UID_COUNT - 1}, got ${raw}`);
  }
  return n;
}

/** How this QEMU spells the drop: `-runas`/`-chroot` (≤ 9.0) or `-run-with user=…,chroot=…` (9.1 and later). */
export interface QemuDropSyntax {
  runWithUser: boolean;
  runWithChroot: boolean;
}

export const LEGACY_DROP_SYNTAX: QemuDropSyntax = { runWithUser: false, runWithChroot: false };

/** Reads the drop syntax from `qemu -help` (its line for -run-with lists the suboptions it has). */
export function parseDropSyntax(help: string): QemuDropSyntax {
  const runWith = /^-run-with .*$/m.exec(help)?.[0] ?? "";
  return { runWithUser: /\buser=/.test(runWith), runWithChroot: /\bchroot=/.test(runWith) };
}

const execFileAsync = promisify(execFile);
/** How long QEMU's `-help` may take (~10 ms measured; a slow disk or a loaded host more). */
const PROBE_TIMEOUT_MS = 10_000;
const memo = new Map<string, Promise<QemuDropSyntax>>();

/**
 * The drop syntax of the QEMU at `qemuBin`, asked once per binary (path, size, mtime): remembered in this process
 * and, given `cacheDir`, in a small file there, so a worker's start does not pay QEMU's `-help` (~10 ms).
 */
export function probeDropSyntax(qemuBin: string, cacheDir?: string): Promise<QemuDropSyntax> {
  const key = qemuBin;
  let pending = memo.get(key);
  if (!pending) {
    pending = probe(qemuBin, cacheDir);
    memo.set(key, pending);
    pending.catch(() => memo.delete(key));
  }
  return pending;
}

async function probe(qemuBin: string, cacheDir: string | undefined): Promise<QemuDropSyntax> {
  const st = await stat(qemuBin);
  const id = `${qemuBin}\0${st.size}\0${st.mtimeMs}`;
  const cacheFile = cacheDir ? join(cacheDir, "qemu-drop-syntax.json") : undefined;
  if (cacheFile) {
    try {
      const cached = JSON.parse(await readFile(cacheFile, "utf8")) as { id?: unknown; syntax?: QemuDropSyntax };
      if (cached.id === id && typeof cached.syntax?.runWithUser === "boolean" && typeof cached.syntax.runWithChroot === "boolean") {
        return cached.syntax;
      }
    } catch {
      // absent or unreadable: ask QEMU
    }
  }
  let stdout: string;
  try {
    // Bounded: a binary that never answers held the boot forever, and the `-help` child outlived a stopped worker.
    ({ stdout } = await execFileAsync(qemuBin, ["-help"], { maxBuffer: 4 * 1024 * 1024, timeout: PROBE_TIMEOUT_MS, killSignal: "SIGKILL" }));
  } catch (error) {
    if ((error as { killed?: boolean }).killed) throw new Error(`did not answer within ${PROBE_TIMEOUT_MS / 1000} s`, { cause: error });
    throw error;
  }
  const syntax = parseDropSyntax(stdout);
  if (cacheFile) {
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    try {
      await mkdir(cacheDir!, { recursive: true, mode: 0o700 });
      await writeFile(tmp, JSON.stringify({ id, syntax }), { mode: 0o600 });
      await rename(tmp, cacheFile);
    } catch {
      await rm(tmp, { force: true });
    }
  }
  return syntax;
}

/** QEMU's arguments for `confine` in `syntax`. */
export function confinementArgs(confine: QemuConfinement | undefined, syntax: QemuDropSyntax = LEGACY_DROP_SYNTAX): string[] {
  if (!confine) return [];
  const args: string[] = [];
  if (confine.seccomp) {
    // elevateprivileges=deny would also refuse QEMU's own setuid/setgid for the drop below (the filter is in
    // place before it); without the drop, deny them.
    args.push("-sandbox", `on,obsolete=deny,spawn=deny,resourcecontrol=deny${confine.user ? "" : ",elevateprivileges=deny"}`);
  }
  const runWith: string[] = [];
  if (confine.chrootDir !== undefined) {
    if (/,/.test(confine.chrootDir)) throw new RangeError(`QEMU's chroot directory may not contain a comma: ${confine.chrootDir}`);
    if (syntax.runWithChroot) runWith.push(`chroot=${confine.chrootDir}`);
    else args.push("-chroot", confine.chrootDir);
  }
  if (confine.user) {
    const { uid, gid } = confine.user;
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid <= 0 || gid <= 0) throw new RangeError(`QEMU must not run as uid ${uid} gid ${gid}`);
    if (syntax.runWithUser) runWith.push(`user=${uid}:${gid}`);
    else args.push("-runas", `${uid}:${gid}`);
  }
  if (runWith.length) args.push("-run-with", runWith.join(","));
  return args;
}
