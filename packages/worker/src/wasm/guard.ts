import { writeSync } from "node:fs";
import type { WasmMemory } from "./wa.js";

/** WASI preview 1 errno values used here. */
export const ERRNO = { SUCCESS: 0, BADF: 8, FAULT: 21, NOTSUP: 58, ROFS: 69, SPIPE: 70, NOTCAPABLE: 76 } as const;

const O_CREAT = 1;
const O_DIRECTORY = 2;
const O_TRUNC = 8;
const FDFLAG_APPEND = 1;
// rights that change a file's contents or size
const WRITE_RIGHTS = (1n << 0n) | (1n << 6n) | (1n << 8n) | (1n << 22n) | (1n << 23n);

export interface GuardOptions {
  /** Preopened fds of read-only dirs. */
  readOnlyFds: number[];
  /** The guest's memory (known after instantiation). */
  memory: () => WasmMemory;
  /** Most bytes kept per stdio stream (fd 1, fd 2); the rest is discarded after one marker line. */
  stdioCapBytes: number;
  /** Host fds behind the guest's fd 1 and 2, for the marker line. */
  stdioHostFds: { 1: number; 2: number };
}

type WasiFn = (...args: (number | bigint)[]) => number;

/**
 * Wraps node:wasi's preview 1 imports with what node:wasi cannot do itself: read-only preopens (uvwasi has no
 * read-only flag, and it does not go through Node's permission model), and bounded stdout/stderr. An fd opened
 * through a read-only dir is read-only too, whatever it names; writes, creates, truncates, renames, links,
 * unlinks and timestamp changes through such fds fail with EROFS.
 *
 * Symlinks: uvwasi checks a new link's target as text only, but the kernel resolves it component by component,
 * so `a -> .` then `l -> a/a/../..` made `l` the mount's grandparent (review s16: a module wrote any host file
 * through it). A new link's target must be relative and free of `..`: such a link resolves below its own
 * directory wherever it is moved, so no link the module makes can climb (the host's own links are checked at
 * start, mount-links.ts).
 *
 * Stdio: the guest fds that are the host's stdout/stderr are tracked through fd_renumber and fd_close (a
 * `fd_renumber(1, 0)` used to give an uncapped stdout), every write to them is cut to what is left of the cap
 * (one fd_write can carry ~2 GiB through aliased iovecs), and positional writes, allocation, resizing and
 * timestamps on them are refused (`fd_filestat_set_size(1, 1 TiB)` made the log that large).
 */
export function guardWasiImports(imports: Record<string, WasiFn>, options: GuardOptions): Record<string, WasiFn> {
  const ro = new Set(options.readOnlyFds);
  /** Guest fd -> the host stream it writes to (1 stdout, 2 stderr). */
  const stdio = new Map<number, 1 | 2>([
    [1, 1],
    [2, 2],
  ]);
  const written: Record<number, number> = { 1: 0, 2: 0 };
  const truncated: Record<number, boolean> = { 1: false, 2: false };
  const view = () => new DataView(options.memory().buffer);
  const out: Record<string, WasiFn> = { ...imports };
  const refuseOn = (name: string, ...positions: number[]) => {
    const inner = imports[name];
    if (!inner) return;
    out[name] = (...args) => (positions.some((p) => ro.has(Number(args[p]))) ? ERRNO.ROFS : inner(...args));
  };
  /** Wraps `name` so that its fd argument (position 0) naming a host stdio stream fails with `errno`. */
  const refuseOnStdio = (name: string, errno: number) => {
    const inner = out[name];
    if (!inner) return;
    out[name] = (...args) => (stdio.has(Number(args[0])) ? errno : inner(...args));
  };

  out.path_open = (fd, dirflags, path, pathLen, oflags, rightsBase, rightsInheriting, fdflags, outFd) => {
    const fromRo = ro.has(Number(fd));
    let base = BigInt(rightsBase!);
    let inheriting = BigInt(rightsInheriting!);
    if (fromRo) {
      const o = Number(oflags);
      if (o & (O_CREAT | O_TRUNC) || Number(fdflags) & FDFLAG_APPEND) return ERRNO.ROFS;
      if (base & WRITE_RIGHTS) {
        if (!(o & O_DIRECTORY)) return ERRNO.ROFS;
        base &= ~WRITE_RIGHTS;
      }
      inheriting &= ~WRITE_RIGHTS;
    }
    const rc = imports.path_open!(fd!, dirflags!, path!, pathLen!, oflags!, base, inheriting, fdflags!, outFd!);
    if (rc === ERRNO.SUCCESS && fromRo) ro.add(view().getUint32(Number(outFd), true));
    return rc;
  };
  out.fd_close = (fd) => {
    const rc = imports.fd_close!(fd!);
    if (rc === ERRNO.SUCCESS) {
      ro.delete(Number(fd));
      stdio.delete(Number(fd));
    }
    return rc;
  };
  out.fd_renumber = (from, to) => {
    const rc = imports.fd_renumber!(from!, to!);
    const f = Number(from);
    const t = Number(to);
    // renumbering an fd onto itself changes nothing (it used to drop the fd's read-only mark: review s16)
    if (rc === ERRNO.SUCCESS && f !== t) {
      if (ro.has(f)) ro.add(t);
      else ro.delete(t);
      ro.delete(f);
      const stream = stdio.get(f);
      if (stream) stdio.set(t, stream);
      else stdio.delete(t);
      stdio.delete(f);
    }
    return rc;
  };
  refuseOn("fd_pwrite", 0);
  refuseOn("fd_allocate", 0);
  refuseOn("fd_filestat_set_size", 0);
  refuseOn("fd_filestat_set_times", 0);
  refuseOn("path_create_directory", 0);
  refuseOn("path_filestat_set_times", 0);
  refuseOn("path_link", 0, 4);
  refuseOn("path_remove_directory", 0);
  refuseOn("path_rename", 0, 3);
  refuseOn("path_symlink", 2);
  refuseOn("path_unlink_file", 0);
  const symlink = out.path_symlink;
  if (symlink) {
    out.path_symlink = (target, targetLen, fd, path, pathLen) => {
      let text: string;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array(options.memory().buffer, Number(target), Number(targetLen)));
      } catch {
        return ERRNO.FAULT;
      }
      if (!symlinkTargetStaysBelow(text)) return ERRNO.NOTCAPABLE;
      return symlink(target!, targetLen!, fd!, path!, pathLen!);
    };
  }

  // the host's stdout/stderr take appends through fd_write only
  refuseOnStdio("fd_pwrite", ERRNO.SPIPE);
  refuseOnStdio("fd_allocate", ERRNO.NOTSUP);
  refuseOnStdio("fd_filestat_set_size", ERRNO.NOTSUP);
  refuseOnStdio("fd_filestat_set_times", ERRNO.NOTSUP);

  out.fd_write = (fd, iovs, iovsLen, nwritten) => {
    const f = Number(fd);
    if (ro.has(f)) return ERRNO.ROFS;
    const stream = stdio.get(f);
    if (!stream) return imports.fd_write!(fd!, iovs!, iovsLen!, nwritten!);
    // written here, not by uvwasi: only what is left of the cap goes out, whatever the iovecs add up to
    const chunks: Uint8Array[] = [];
    let total = 0;
    let kept = 0;
    try {
      const memory = options.memory().buffer;
      const dv = new DataView(memory);
      let room = Math.max(0, options.stdioCapBytes - written[stream]!);
      for (let i = 0; i < Number(iovsLen); i++) {
        const base = dv.getUint32(Number(iovs) + i * 8, true);
        const len = dv.getUint32(Number(iovs) + i * 8 + 4, true);
        if (base + len > memory.byteLength) return ERRNO.FAULT;
        total += len;
        const keep = Math.min(len, room);
        if (keep > 0) chunks.push(new Uint8Array(memory, base, keep));
        room -= keep;
        kept += keep;
      }
    } catch {
      return ERRNO.FAULT;
    }
    const hostFd = options.stdioHostFds[stream];
    try {
      for (const chunk of chunks) {
        let off = 0;
        while (off < chunk.byteLength) off += writeSync(hostFd, chunk, off, chunk.byteLength - off);
      }
    } catch {
      return ERRNO.BADF;
    }
    written[stream]! += kept;
    if (kept < total && !truncated[stream]) {
      truncated[stream] = true;
      try {
        writeSync(hostFd, `\n[iii: ${stream === 1 ? "stdout" : "stderr"} truncated after ${written[stream]} bytes]\n`);
      } catch {
        // the log is gone; nothing to tell
      }
    }
    view().setUint32(Number(nwritten), total, true);
    return ERRNO.SUCCESS;
  };
  return out;
}

/**
 * Whether a symlink target resolves below the link's own directory wherever the link is: relative, not empty,
 * and without a `..` component (a `..` after a link to `.` climbs where the text does not).
 */
export function symlinkTargetStaysBelow(target: string): boolean {
  if (target === "" || target.startsWith("/") || target.includes("\0")) return false;
  return !target.split("/").includes("..");
}
