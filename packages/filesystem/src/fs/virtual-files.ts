// Files injected into the guest view (`/init.krun`, `/.iii/...`): read-only, listed,
// 0755, never backed by the served directory. Reads are positional reads from a host
// fd (the source file itself, or a memfd holding in-memory content), so serving a
// large init binary costs one pread per FUSE request and no JS copy.
import fs from "node:fs";
import { FilesystemError } from "../errors.js";
import { memfdCreate, O_CLOEXEC } from "../host/libc.js";
import { isValidGuestPath, joinGuest, splitParent } from "../core/guest-path.js";
import { S_IFDIR, S_IFREG, type Attr } from "./tree.js";

export type VirtualFileSource = { hostPath: string } | { content: string | Uint8Array };

const VIRTUAL_INO_BASE = 0xfffff000;

export interface VirtualFile {
  kind: "file";
  fd: number;
  /** Re-read the size from the fd on each getattr (host files may be replaced in place). */
  sizeFromFd: boolean;
  size: number;
  ino: number;
}

export interface VirtualDir {
  kind: "dir";
  children: Set<string>;
  ino: number;
}

export type VirtualEntry = VirtualFile | VirtualDir;

/** Where a virtual file may live: the init and the `/.iii/` control tree. */
export function isAllowedVirtualPath(path: string): boolean {
  return isValidGuestPath(path) && (path === "/init.krun" || (path.startsWith("/.iii/") && path.length > 6));
}

export class VirtualFiles {
  readonly entries = new Map<string, VirtualEntry>();
  /** Names the root listing gains (and hides from the host directory). */
  readonly rootNames = new Set<string>();
  private readonly mountTimeMs = Date.now();

  constructor(spec: Record<string, VirtualFileSource> | undefined) {
    if (!spec) return;
    let ino = VIRTUAL_INO_BASE;
    try {
      for (const [path, source] of Object.entries(spec)) {
        if (!isAllowedVirtualPath(path)) {
          throw new FilesystemError("VirtualFileInvalid", `virtual file path ${JSON.stringify(path)} must be /init.krun or below /.iii/`);
        }
        // Parents become virtual directories.
        let child = path;
        for (;;) {
          const [parent, name] = splitParent(child);
          if (parent === "/") {
            this.rootNames.add(name);
            break;
          }
          let dir = this.entries.get(parent);
          if (!dir) {
            dir = { kind: "dir", children: new Set(), ino: ino++ };
            this.entries.set(parent, dir);
          }
          if (dir.kind !== "dir") throw new FilesystemError("VirtualFileInvalid", `virtual file ${parent} is also used as a directory`);
          dir.children.add(name);
          child = parent;
        }
        if (this.entries.has(path)) throw new FilesystemError("VirtualFileInvalid", `virtual path ${path} is given twice or is a directory`);
        this.entries.set(path, this.openSource(path, source, ino++));
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  private openSource(path: string, source: VirtualFileSource, ino: number): VirtualFile {
    if ("hostPath" in source) {
      let fd: number;
      try {
        fd = fs.openSync(source.hostPath, fs.constants.O_RDONLY | O_CLOEXEC);
      } catch (cause) {
        throw new FilesystemError("VirtualFileInvalid", `cannot open ${source.hostPath} for virtual file ${path}`, { cause });
      }
      const st = fs.fstatSync(fd);
      if (!st.isFile()) {
        fs.closeSync(fd);
        throw new FilesystemError("VirtualFileInvalid", `${source.hostPath} (virtual file ${path}) is not a regular file`);
      }
      return { kind: "file", fd, sizeFromFd: true, size: st.size, ino };
    }
    const bytes = typeof source.content === "string" ? Buffer.from(source.content) : source.content;
    const fd = memfdCreate(path.slice(path.lastIndexOf("/") + 1));
    let off = 0;
    while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off, off);
    return { kind: "file", fd, sizeFromFd: false, size: bytes.length, ino };
  }

  get size(): number {
    return this.entries.size;
  }

  get(path: string): VirtualEntry | undefined {
    return this.entries.get(path);
  }

  /** True when the path is a virtual entry or anything below a virtual directory. */
  covers(path: string): boolean {
    if (this.entries.size === 0 || path === "/") return false;
    if (this.entries.has(path)) return true;
    const [parent] = splitParent(path);
    return parent !== "/" && this.covers(parent);
  }

  attr(entry: VirtualEntry): Attr {
    const t = this.mountTimeMs;
    if (entry.kind === "dir") {
      return { mode: S_IFDIR | 0o755, uid: 0, gid: 0, size: 4096, dev: 0, nlink: 2, ino: entry.ino, rdev: 0, blksize: 4096, blocks: 8, atime: t, mtime: t, ctime: t };
    }
    const size = entry.sizeFromFd ? fs.fstatSync(entry.fd).size : entry.size;
    return { mode: S_IFREG | 0o755, uid: 0, gid: 0, size, dev: 0, nlink: 1, ino: entry.ino, rdev: 0, blksize: 4096, blocks: Math.ceil(size / 512), atime: t, mtime: t, ctime: t };
  }

  childrenOf(dir: string): string[] {
    const e = this.entries.get(dir);
    return e && e.kind === "dir" ? [...e.children] : [];
  }

  pathOf(dir: string, name: string): string {
    return joinGuest(dir, name);
  }

  close(): void {
    for (const e of this.entries.values()) if (e.kind === "file") fs.closeSync(e.fd);
    this.entries.clear();
  }
}
