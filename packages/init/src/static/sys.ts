// Throwing wrappers over iii:sys and the QuickJS os/std modules.
import * as os from "os";
import * as std from "std";
import * as sys from "iii:sys";
import { concatBytes, utf8Decode, utf8Encode as utf8 } from "../portable/bytes.js";

export class SysError extends Error {
  readonly errno: number;
  readonly errnoName: string;
  /** The errno name, like Node's ErrnoException.code. */
  readonly code: string;
  constructor(what: string, errno: number) {
    const name = sys.errnoName(errno);
    // "<what> failed: <ERRNO> (errno N)": the form init's one-line errors and their tests use.
    super(`${what} failed: ${name} (errno ${Math.abs(errno)})`);
    this.name = "SysError";
    this.errno = Math.abs(errno);
    this.errnoName = name;
    this.code = name;
  }
}

export function check(what: string, r: number): number {
  if (r < 0) throw new SysError(what, r);
  return r;
}

export function checkPair<T>(what: string, r: T | number): T {
  if (typeof r === "number") throw new SysError(what, r);
  return r;
}

export const MS = { RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, RELATIME: 1 << 21 } as const;
export const RB_AUTOBOOT = 0x01234567;
export const RLIMIT_NOFILE = 7;
export const PR_SET_CHILD_SUBREAPER = 36;

export { decodeWaitStatus, signalName, SIGNALS } from "../portable/wait-status.js";

/**
 * Whole file as text, or null when it cannot be read. Not std.loadFile: it sizes the buffer with ftell, and
 * /proc files report size 0, so /proc/self/mounts read as "" (seen in a VM: /dev looked unmounted, mount → EBUSY).
 */
export function readText(path: string): string | null {
  try {
    return readFileOrThrow(path);
  } catch {
    return null;
  }
}

export function writeText(path: string, text: string, mode = 0o644): void {
  const fd = check(`open ${path}`, sys.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode));
  try {
    writeAll(fd, text);
  } finally {
    os.close(fd);
  }
}

const enc = (s: string): Uint8Array => {
  // ASCII fast path; the portable encoder otherwise.
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return utf8(s);
    out[i] = c;
  }
  return out;
};

export function writeAll(fd: number, data: Uint8Array | string): void {
  const bytes = typeof data === "string" ? enc(data) : data;
  let off = 0;
  while (off < bytes.byteLength) {
    const n = os.write(fd, bytes.buffer as ArrayBuffer, bytes.byteOffset + off, bytes.byteLength - off);
    if (n < 0) {
      if (-n === 11 || -n === 4) continue; // EAGAIN / EINTR: blocking writer, retry
      throw new SysError(`write fd ${fd}`, n);
    }
    off += n;
  }
}

export function mkdirp(path: string, mode = 0o755): void {
  const parts = path.split("/").filter(Boolean);
  let cur = "";
  for (const p of parts) {
    cur += `/${p}`;
    const r = os.mkdir(cur, mode);
    if (r < 0 && -r !== 17) throw new SysError(`mkdir ${cur}`, r);
  }
}

export function exists(path: string): boolean {
  return os.stat(path)[1] === 0;
}

export function isDirectory(path: string): boolean | null {
  const [st, err] = os.stat(path);
  if (err !== 0) return null;
  return (st.mode & os.S_IFMT) === os.S_IFDIR;
}

/** Whole file as UTF-8 text; throws SysError (with the errno) where std.loadFile would only say null. */
export function readFileOrThrow(path: string): string {
  const fd = check(`open ${path}`, sys.open(path, os.O_RDONLY));
  try {
    const chunks: Uint8Array[] = [];
    const buf = new ArrayBuffer(65536);
    for (;;) {
      const n = os.read(fd, buf, 0, buf.byteLength);
      if (n < 0) throw new SysError(`read ${path}`, n);
      if (n === 0) break;
      chunks.push(new Uint8Array(buf.slice(0, n)));
    }
    return utf8Decode(concatBytes(chunks));
  } finally {
    os.close(fd);
  }
}

const SPAWN_STAGES = ["fork", "cgroup", "setsid", "stdio", "tty", "credentials", "cwd", "exec", "confine"] as const;

/** The stage of a failed sys.spawn: a bare negative errno is a failed fork; [-errno, stage] came from the child. */
export function spawnStage(r: number | [number, number]): (typeof SPAWN_STAGES)[number] {
  return typeof r === "number" ? "fork" : (SPAWN_STAGES[r[1]] ?? "fork");
}
