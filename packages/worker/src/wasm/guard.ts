import { writeSync } from "node:fs";
import type { WasmMemory } from "./wa.js";

/** WASI preview 1 errno values used here. */
export const ERRNO = { SUCCESS: 0, BADF: 8, ROFS: 69 } as const;

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
 */
export function guardWasiImports(imports: Record<string, WasiFn>, options: GuardOptions): Record<string, WasiFn> {
  const ro = new Set(options.readOnlyFds);
  const written: Record<number, number> = { 1: 0, 2: 0 };
  const truncated: Record<number, boolean> = { 1: false, 2: false };
  const view = () => new DataView(options.memory().buffer);
  const out: Record<string, WasiFn> = { ...imports };
  const refuseOn = (name: string, ...positions: number[]) => {
    const inner = imports[name];
    if (!inner) return;
    out[name] = (...args) => (positions.some((p) => ro.has(Number(args[p]))) ? ERRNO.ROFS : inner(...args));
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
    if (rc === ERRNO.SUCCESS) ro.delete(Number(fd));
    return rc;
  };
  out.fd_renumber = (from, to) => {
    const rc = imports.fd_renumber!(from!, to!);
    if (rc === ERRNO.SUCCESS) {
      if (ro.has(Number(from))) ro.add(Number(to));
      else ro.delete(Number(to));
      ro.delete(Number(from));
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

  out.fd_write = (fd, iovs, iovsLen, nwritten) => {
    const f = Number(fd);
    if (ro.has(f)) return ERRNO.ROFS;
    if (f !== 1 && f !== 2) return imports.fd_write!(fd!, iovs!, iovsLen!, nwritten!);
    const dv = view();
    let total = 0;
    for (let i = 0; i < Number(iovsLen); i++) total += dv.getUint32(Number(iovs) + i * 8 + 4, true);
    if (written[f]! >= options.stdioCapBytes) {
      if (!truncated[f]) {
        truncated[f] = true;
        try {
          writeSync(options.stdioHostFds[f as 1 | 2], `\n[iii: ${f === 1 ? "stdout" : "stderr"} truncated after ${written[f]} bytes]\n`);
        } catch {
          // the log is gone; nothing to tell
        }
      }
      dv.setUint32(Number(nwritten), total, true);
      return ERRNO.SUCCESS;
    }
    written[f]! += total;
    return imports.fd_write!(fd!, iovs!, iovsLen!, nwritten!);
  };
  return out;
}
