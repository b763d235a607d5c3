import { open } from "node:fs/promises";
import { createRequire } from "node:module";
import { IiiError } from "../errors.js";

// koffi (a native addon, then libc) loads on the first lock, not with this module: reading iii.workers.yaml
// (list, logs, exec) needs no lock, and loading koffi costs the CLI ~100 ms of start-up.
const requireCjs = createRequire(import.meta.url);

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;

const F_SETFD = 2;
const FD_CLOEXEC = 1;

interface Libc {
  flock: (fd: number, operation: number) => number;
  fcntl: (fd: number, command: number, arg: number) => number;
  errno: () => number;
}
let loaded: Libc | undefined;

type Koffi = Pick<typeof import("koffi"), "load" | "errno">;
let koffiModule: Koffi | undefined;

/**
 * koffi's native module, loaded directly: koffi's index.js first evaluates its bundled installer tools, which
 * pull in https, zlib and crypto (measured: ~20 ms for the native module vs ~100 ms through index.js, on the
 * supervisor's boot path). The package is built for linux-x64-glibc only (package.json `os`/`cpu`/`libc`); any
 * other layout or a version mismatch falls back to the package's own entry.
 */
export function loadKoffi(): Koffi {
  if (!koffiModule) {
    let native: (Koffi & { version?: string }) | undefined;
    try {
      if (process.platform === "linux" && process.arch === "x64") {
        native = requireCjs("koffi/build/koffi/linux_x64/koffi.node") as Koffi & { version?: string };
        if (native.version !== (requireCjs("koffi/package.json") as { version: string }).version) native = undefined;
      }
    } catch {
      native = undefined;
    }
    koffiModule = native ?? (requireCjs("koffi") as Koffi);
  }
  return koffiModule;
}

function libc(): Libc {
  if (!loaded) {
    const koffi = loadKoffi();
    const lib = koffi.load("libc.so.6");
    loaded = {
      flock: lib.func("int flock(int fd, int operation)") as Libc["flock"],
      fcntl: lib.func("int fcntl(int fd, int cmd, int arg)") as Libc["fcntl"],
      errno: () => koffi.errno(),
    };
  }
  return loaded;
}

/** Marks an inherited descriptor close-on-exec, so the processes this one spawns do not hold it open. */
export function setCloseOnExec(fd: number): void {
  libc().fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/**
 * Runs `fn` holding an exclusive flock(2) on `lockPath`. The kernel drops the lock when its holder dies,
 * so a writer killed with SIGKILL never leaves a stale lock behind. Polls with LOCK_NB so the event loop
 * keeps running while it waits.
 */
export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const handle = await open(lockPath, "a", 0o644);
  try {
    const { flock, errno } = libc();
    const deadline = Date.now() + timeoutMs;
    let delay = 2;
    for (;;) {
      if (flock(handle.fd, LOCK_EX | LOCK_NB) === 0) break;
      const code = errno();
      if (code !== EWOULDBLOCK) throw new IiiError("StateLockTimeout", `flock ${lockPath} failed (errno ${code})`);
      if (Date.now() > deadline) {
        throw new IiiError("StateLockTimeout", `timed out after ${timeoutMs} ms waiting for the lock on ${lockPath}`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(50, delay * 2);
    }
    try {
      return await fn();
    } finally {
      flock(handle.fd, LOCK_UN);
    }
  } finally {
    await handle.close();
  }
}

/**
 * Takes an exclusive flock on `lockPath` without waiting and keeps it until `release()` or process death
 * (the kernel drops it then). Returns undefined when another process holds it.
 */
export async function tryHoldFileLock(lockPath: string): Promise<{ release: () => Promise<void> } | undefined> {
  const handle = await open(lockPath, "a", 0o644);
  const { flock } = libc();
  if (flock(handle.fd, LOCK_EX | LOCK_NB) !== 0) {
    await handle.close();
    return undefined;
  }
  return {
    release: async () => {
      flock(handle.fd, LOCK_UN);
      await handle.close();
    },
  };
}
