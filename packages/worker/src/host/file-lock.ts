import { constants } from "node:fs";
import { lstat, open, readlink, type FileHandle } from "node:fs/promises";
import { IiiError } from "../errors.js";
import { libcErrno, libcFunction } from "./libc.js";

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;

const F_SETFD = 2;
const FD_CLOEXEC = 1;

type Libc = {
  flock: (fd: number, operation: number) => number;
  fcntl: (fd: number, command: number, arg: number) => number;
  errno: () => number;
};

/** The libc calls this module makes, bound on first use from the shared handle (host/libc.ts). */
function libc(): Libc {
  return {
    flock: libcFunction<Libc["flock"]>("int flock(int fd, int operation)"),
    fcntl: libcFunction<Libc["fcntl"]>("int fcntl(int fd, int cmd, int arg)"),
    errno: libcErrno,
  };
}

/** Marks an inherited descriptor close-on-exec, so the processes this one spawns do not hold it open. */
export function setCloseOnExec(fd: number): void {
  libc().fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// O_NOFOLLOW: a lock file may sit in a project directory a worker writes (`iii.workers.yaml.lock` beside the
// project `iii worker dev` shares read-write), so a link planted at its name must not be followed to create or
// open its target. O_NONBLOCK: a FIFO planted there fails at once (ENXIO) instead of blocking the open forever.
const LOCK_OPEN_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** Opens (creating) the lock file itself, never what a link at its name points to; anything but a regular file is refused. */
async function openLockFile(lockPath: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(lockPath, LOCK_OPEN_FLAGS, 0o600);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP" && (await lstat(lockPath).catch(() => undefined))?.isSymbolicLink()) {
      const target = await readlink(lockPath).catch(() => "?");
      throw new IiiError("StateFileUnwritable", `lock file ${lockPath} is a symbolic link (to ${target}): refusing to follow it; remove it and retry`, { cause: error });
    }
    throw new IiiError("StateFileUnwritable", `cannot open lock file ${lockPath}: ${(error as Error).message}`, { cause: error });
  }
  const info = await handle.stat().catch(async (error: unknown) => {
    await handle.close();
    throw error;
  });
  if (!info.isFile()) {
    await handle.close();
    throw new IiiError("StateFileUnwritable", `lock file ${lockPath} is not a regular file: refusing to use it; remove it and retry`);
  }
  // flock(2) needs no write access: any user who can open a lock file for reading can hold it for ever, and every
  // add/remove of the project then timed out (`iii.workers.yaml.lock` sits in the project directory, 0644 until
  // review rev6i). A lock file is 0600, and one of ours made readable by others before is made so too.
  if ((info.mode & 0o077) !== 0 && info.uid === process.geteuid?.()) await handle.chmod(info.mode & 0o700).catch(() => {});
  return handle;
}

/**
 * Runs `fn` holding an exclusive flock(2) on `lockPath`. The kernel drops the lock when its holder dies,
 * so a writer killed with SIGKILL never leaves a stale lock behind. Polls with LOCK_NB so the event loop
 * keeps running while it waits.
 */
export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const held = await holdFileLock(lockPath, { timeoutMs });
  try {
    return await fn();
  } finally {
    await held.release();
  }
}

/**
 * Takes an exclusive flock on `lockPath` without waiting and keeps it until `release()` or process death
 * (the kernel drops it then). Returns undefined when another process holds it.
 */
export async function tryHoldFileLock(lockPath: string): Promise<{ release: () => Promise<void> } | undefined> {
  try {
    return await holdFileLock(lockPath, { timeoutMs: 0 });
  } catch (error) {
    if (error instanceof IiiError && error.code === "StateLockTimeout") return undefined;
    throw error;
  }
}

/**
 * Takes a flock on `lockPath`, shared or exclusive, waiting up to `timeoutMs` (polling with LOCK_NB, so the event
 * loop runs), and keeps it until `release()` or process death. Shared holders exclude only an exclusive one.
 */
export async function holdFileLock(lockPath: string, options: { shared?: boolean; timeoutMs?: number; what?: string } = {}): Promise<{ release: () => Promise<void> }> {
  const handle = await openLockFile(lockPath);
  const { flock, errno } = libc();
  const operation = (options.shared ? LOCK_SH : LOCK_EX) | LOCK_NB;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  let delay = 2;
  try {
    while (flock(handle.fd, operation) !== 0) {
      const code = errno();
      if (code !== EWOULDBLOCK) throw new IiiError("StateLockTimeout", `flock ${lockPath} failed (errno ${code})`);
      if (Date.now() >= deadline) {
        throw new IiiError("StateLockTimeout", `timed out after ${timeoutMs} ms waiting for ${options.what ?? `the lock on ${lockPath}`}`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(50, delay * 2);
    }
  } catch (error) {
    await handle.close();
    throw error;
  }
  return {
    release: async () => {
      flock(handle.fd, LOCK_UN);
      await handle.close();
    },
  };
}
