import { open } from "node:fs/promises";
import koffi from "koffi";
import { IiiError } from "../errors.js";

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;

let flockFn: ((fd: number, operation: number) => number) | undefined;
let errnoFn: (() => number) | undefined;

function libc() {
  if (!flockFn) {
    const lib = koffi.load("libc.so.6");
    flockFn = lib.func("int flock(int fd, int operation)") as (fd: number, operation: number) => number;
    errnoFn = () => koffi.errno();
  }
  return { flock: flockFn, errno: errnoFn! };
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
