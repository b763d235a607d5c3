// mountPassthrough: options → GuestFs → fuse-native mount, plus the lifecycle around
// it (stale-mount cleanup, external-unmount detection, clean unmount).
import { EventEmitter } from "node:events";
import v8 from "node:v8";
import vm from "node:vm";
import fs from "node:fs";
import path from "node:path";
import { FilesystemError, type FilesystemErrorCode } from "../errors.js";
import { findMount } from "../core/mountinfo.js";
import { isValidGuestPath, nameProblem } from "../core/guest-path.js";
import { GuestFs } from "../fs/guest-fs.js";
import { PassthroughTree } from "../fs/passthrough-tree.js";
import { LayeredTree } from "../fs/layered-tree.js";
import type { Tree } from "../fs/tree.js";
import { VirtualFiles, type VirtualFileSource } from "../fs/virtual-files.js";
import { IiiFuse, releaseNativeThread, type MountStats } from "./fuse-shell.js";
import { setCloexec } from "../host/libc.js";
import { enableDiskQuota, enableIno64, enableLinkGroups, enableShimIo, fuseCaller, shimHides } from "../host/fuse-caller.js";
import type { HostOwner, HostPolicy } from "../fs/host-meta.js";
import { findServerScript, mountInChild } from "./client.js";
import { detachMount, readMountTable, runTool } from "./detach.js";

export { setattrShimPath, MountServer } from "./client.js";

export interface CacheOptions {
  /** Kernel dentry cache lifetime (seconds). Default 5. */
  entryTimeoutSec?: number;
  /**
   * Kernel attribute cache lifetime (seconds). Default 1 (libfuse's and bindfs's
   * default). libfuse 2's high-level API gives every name of a hard-linked file its
   * own kernel inode, so a change made through one name can leave the other names'
   * attributes stale for up to this long (the source of a new link excepted: the shim
   * refreshes it); 0 is exact but costs a round trip per stat
   * (measured: warm `find` over 2,000 files 20 ms at 1 s, 760 ms at 0).
   */
  attrTimeoutSec?: number;
  /** Cache lifetime of failed lookups (seconds). Default 1. */
  negativeTimeoutSec?: number;
  /** Keep file pages cached across opens (`kernel_cache`). Default true. */
  kernelCache?: boolean;
  /** Largest write request (`big_writes,max_write`); libfuse2 caps it at 128 KiB. Default 131072. */
  maxWriteBytes?: number;
}

export interface MountOptions {
  /** Host directory served as the guest view (exclusive with `layers`). */
  root?: string;
  /** Copy-on-write: `lower` is never modified, changes land in `upper` (exclusive with `root`). */
  layers?: { lower: string; upper: string };
  /** Existing empty directory to mount on. */
  mountpoint: string;
  /** Read-only injected files: `/init.krun` and paths below `/.iii/`. */
  virtualFiles?: Record<string, VirtualFileSource>;
  /** Every mutation fails with EROFS. */
  readOnly?: boolean;
  /**
   * Guest paths (absolute, e.g. `/iii.workers.yaml`, `/.git`) the guest may read but never change: writing,
   * creating, removing, renaming, linking from or changing the metadata of such a path or anything below it
   * fails with EROFS, and so does creating, removing or renaming a directory above one (the guest could move
   * the protected entry away, or put a symlink where the host expects a directory). For files the host acts on
   * in a writable share: the guest must not rewrite the settings the host's next command reads.
   */
  protectedPaths?: string[];
  /**
   * Entry names protected as protectedPaths protects a path, wherever they are in the tree: a path any of whose
   * components is one of them can be read but not written, created, removed, renamed, linked from or have its
   * metadata changed (EROFS). For files the host acts on that may sit anywhere in a writable share: another
   * project's `iii.workers.yaml` in a shared code directory (its next `start` would run the guest's settings).
   * A directory above one stays free (unlike protectedPaths): moving it moves the entry, unchanged.
   */
  protectedNames?: string[];
  /**
   * Most bytes the writable layer (`layers.upper`) may hold; growth past it fails in the guest with ENOSPC, and
   * statfs (`df`) reports it as the size. Counted per entry of upper: its logical size (a sparse file in full) or
   * its blocks if more, plus 1 KiB; files the server holds open with no name left count until closed. Only with
   * `layers`; kept by the shim (setattr-shim.c, tenth job), so it needs the child server with the shim built:
   * otherwise the mount fails with `DiskLimitUnsupported` rather than run unlimited.
   */
  upperLimitBytes?: number;
  /**
   * Host owner of every file, directory and symlink the guest creates (and of copied-up
   * entries). The guest's own owner, mode bits and file type are kept in an xattr and
   * never applied to the host file. Default: the owner of `root`, or of `layers.upper`.
   */
  hostOwner?: HostOwner;
  cache?: CacheOptions;
  /** Unmount in the kernel when this process dies (fusermount `auto_unmount`). Default true. */
  autoUnmount?: boolean;
  /** Let other users (e.g. a non-root virtiofsd) use the mount (`allow_other`). Default false. */
  allowOther?: boolean;
  /**
   * The kernel checks each caller's permissions against the modes and owners the mount reports
   * (`default_permissions`), as on a real file system: without it the server, acting as root, lets any user
   * of an `allowOther` mount write, chmod or remove anything. For mounts other host users use directly.
   * Default false: under virtiofsd the host requests carry virtiofsd's own credentials (the guest caller's
   * uid/gid only for creations, without its supplementary groups), so the guest kernel's checks are the ones
   * that fit there.
   */
  defaultPermissions?: boolean;
  /**
   * Report the host's inode numbers (`use_ino`) so hard links share a number for du, tar and cp -a on the
   * host. Default false, and keep it false under virtiofsd: virtiofsd identifies inodes by (st_ino, st_dev),
   * while libfuse 2 gives every name its own node. With host numbers, a hard link and its original (or a new
   * file reusing a deleted file's number) become one virtiofsd inode bound to one name; remove that name and
   * the guest gets ENOENT/ENOTDIR on the others (npm's cache does exactly link + unlink). libfuse's own node
   * ids are unique while a node lives.
   */
  useIno?: boolean;
  /**
   * Inode numbers derived from the host file, the same at every mount of the same tree (so a guest `git status`
   * on a fresh mount matches its index): 64 bits, the host inode number in the low half, a hash of the host
   * device and birth time in the high half, one number for every name of a hard-linked file (see
   * src/fs/inode-numbers.ts). Needs the shim (process isolation, built with a C compiler) and a host file system
   * with birth times; without either the mount starts with libfuse's numbers and one warning
   * (`IiiStableInodesOff`). Exclusive with `useIno`. Default false.
   */
  stableInodes?: boolean;
  /** How often the mount table is checked for an external unmount. Default 1000 ms. */
  watchIntervalMs?: number;
  /**
   * Child server only: how often it looks for changed request counters and sends them to the handle's
   * stats() (default 250 ms). 0: never on a timer, only at unmount, so an idle mount wakes its server for
   * nothing but the mount-table check (a worker, which never reads them, passes 0).
   */
  statsPushMs?: number;
  /**
   * Child server only: how long unmount() waits for the server process to unmount and exit. After it, the
   * server's threads (state, wait channel, kernel stack) are read from /proc, the server is killed, the mount
   * lazily detached, and unmount() rejects with `UnmountTimeout` carrying them. Default 10,000 ms.
   */
  unmountTimeoutMs?: number;
  /**
   * Child server only: how long mount() waits for the server to report the mount usable (its own wait for the
   * kernel's INIT is 15 s). After it, the server's threads are read from /proc, the server is killed, a mount it
   * left is lazily detached, and mount() rejects with `MountFailed` carrying them. Default 30,000 ms.
   */
  mountTimeoutMs?: number;
  /**
   * "process": a child Node process serves the mount (with the setattr shim preloaded
   * when it was built, so mtime-only updates work); the handle works the same and
   * stats() is a snapshot at most `statsPushMs` old. "in-process": FUSE requests are answered
   * on this process's JS thread, so this process must never block on the mount (no
   * fs.*Sync on paths inside it, no spawn with cwd inside it). Default "auto":
   * "process" when dist/server.js is present (it is, unless this package was bundled
   * into another file), else "in-process".
   */
  isolation?: "auto" | "in-process" | "process";
}

export interface ServerMemory {
  /** V8 heap in use. */
  heapUsed: number;
  /** Memory of C++ objects bound to JS objects, Buffers included. */
  external: number;
  /** ArrayBuffers and Buffers (part of external). */
  arrayBuffers: number;
}

let gcFn: (() => void) | undefined;

/** Runs a full GC (exposing gc at runtime when the process was not started with --expose-gc) and measures. */
export function measureAfterGc(): ServerMemory {
  if (!gcFn) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (exposed) gcFn = exposed;
    else {
      v8.setFlagsFromString("--expose-gc");
      gcFn = vm.runInNewContext("gc") as () => void;
    }
  }
  gcFn();
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

export type UnmountReason = { external: false } | { external: true; error: FilesystemError };

export interface MountHandle extends AsyncDisposable {
  readonly mountpoint: string;
  /** Pid of the process serving the mount (this one, or the child with isolation "process"). */
  readonly serverPid: number;
  readonly mounted: boolean;
  /** Settles once the mount is gone, whoever removed it. */
  readonly closed: Promise<UnmountReason>;
  unmount(): Promise<void>;
  stats(): MountStats;
  /** The serving process's JS memory after a full garbage collection (leak checks; not RSS, which GC timing moves). */
  memoryAfterGc(): Promise<ServerMemory>;
  on(event: "unmounted", listener: (reason: UnmountReason) => void): this;
  on(event: "error", listener: (error: FilesystemError) => void): this;
}

/** Is the mount at `mountpoint` a dead FUSE connection (owner gone, not unmounted)? */
async function probeMount(mountpoint: string): Promise<"stale" | "live" | "hung"> {
  const timeout = new Promise<"hung">((r) => setTimeout(() => r("hung"), 2000).unref());
  const stat = fs.promises.stat(mountpoint).then(
    () => "live" as const,
    (err: NodeJS.ErrnoException) => (err.code === "ENOTCONN" || err.code === "ECONNABORTED" ? ("stale" as const) : ("live" as const)),
  );
  return Promise.race([stat, timeout]);
}

/** Removes a FUSE mount left behind by a killed owner; refuses to touch a live one. */
export async function cleanupStaleMount(mountpoint: string): Promise<boolean> {
  const existing = findMount(readMountTable(), mountpoint);
  if (!existing) return false;
  if (!existing.fsType.startsWith("fuse")) {
    throw new FilesystemError("MountpointBusy", `${mountpoint} already has a ${existing.fsType} mount`);
  }
  const state = await probeMount(mountpoint);
  if (state === "live") throw new FilesystemError("MountpointBusy", `${mountpoint} is served by a live FUSE filesystem (${existing.source})`);
  const { gone, detail } = await detachMount(mountpoint);
  if (!gone) throw new FilesystemError("StaleMountCleanupFailed", `could not remove the stale mount at ${mountpoint}: ${detail}`);
  return true;
}

function buildOptionString(o: MountOptions): string {
  const c = o.cache ?? {};
  const num = (v: number | undefined, d: number, name: string): number => {
    const x = v ?? d;
    if (!Number.isFinite(x) || x < 0) throw new FilesystemError("InvalidOptions", `cache.${name} must be a non-negative number`);
    return x;
  };
  const maxWrite = Math.min(num(c.maxWriteBytes, 131072, "maxWriteBytes"), 131072);
  const opts = [
    "fsname=iii-fs",
    "subtype=iii",
    // Whatever the served tree reports (a guest's setuid file, device node or file
    // capability), the host kernel never honours it on this mount.
    "nosuid",
    "nodev",
    // O_TRUNC reaches open() instead of a separate truncate round trip.
    "atomic_o_trunc",
    `entry_timeout=${num(c.entryTimeoutSec, 5, "entryTimeoutSec")}`,
    `attr_timeout=${num(c.attrTimeoutSec, 1, "attrTimeoutSec")}`,
    `negative_timeout=${num(c.negativeTimeoutSec, 1, "negativeTimeoutSec")}`,
    "big_writes",
    `max_write=${maxWrite}`,
    "max_read=131072",
    // The shim answers reads by splicing from the host fd into /dev/fuse (setattr-shim.c, eighth job).
    "splice_write",
    "splice_move",
  ];
  if (o.useIno && o.stableInodes) throw new FilesystemError("InvalidOptions", "useIno and stableInodes are exclusive");
  if (o.useIno || o.stableInodes) opts.push("use_ino");
  if (c.kernelCache ?? true) opts.push("kernel_cache");
  if (o.autoUnmount ?? true) opts.push("auto_unmount");
  if (o.allowOther) opts.push("allow_other");
  if (o.defaultPermissions) opts.push("default_permissions");
  return `-o${opts.join(",")}`;
}

function checkUpperLimit(o: MountOptions): void {
  const limit = o.upperLimitBytes;
  if (limit === undefined) return;
  if (!Number.isSafeInteger(limit) || limit <= 0) throw new FilesystemError("InvalidOptions", `upperLimitBytes must be a positive integer, got ${limit}`);
  if (!o.layers) throw new FilesystemError("InvalidOptions", "upperLimitBytes needs layers (it limits the writable layer)");
}

function checkHostOwner(o: MountOptions["hostOwner"]): void {
  if (o === undefined) return;
  const ok = (v: unknown): boolean => typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 0xffffffff;
  if (typeof o !== "object" || o === null || !ok(o.uid) || !ok(o.gid)) {
    throw new FilesystemError("InvalidOptions", "hostOwner must be { uid, gid } with integers in [0, 2^32-1)");
  }
}

/** Creation policy: the host owner (option, else the served directory's owner) and the FUSE caller. */
function hostPolicy(owner: HostOwner | undefined, dir: string): HostPolicy {
  const st = fs.statSync(dir);
  const hostOwner = owner ? { uid: owner.uid, gid: owner.gid } : { uid: st.uid, gid: st.gid };
  const self = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
  return { owner: hostOwner, caller: () => fuseCaller() ?? self };
}

function checkDir(p: string, code: "RootNotFound" | "MountpointInvalid", what: string): string {
  const abs = path.resolve(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (cause) {
    throw new FilesystemError(code, `${what} ${abs} does not exist`, { cause });
  }
  if (!st.isDirectory()) throw new FilesystemError(code, `${what} ${abs} is not a directory`);
  return abs;
}

export function fuseAvailable(): { ok: true } | { ok: false; reason: string } {
  try {
    fs.accessSync("/dev/fuse", fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return { ok: false, reason: "/dev/fuse is missing or not accessible" };
  }
  const dirs = (process.env.PATH ?? "/usr/bin:/bin").split(":");
  if (!dirs.some((d) => fs.existsSync(path.join(d, "fusermount")))) return { ok: false, reason: "fusermount is not on PATH (install fuse3)" };
  return { ok: true };
}

class FuseMount extends EventEmitter implements MountHandle {
  readonly mountpoint: string;
  readonly serverPid = process.pid;
  readonly closed: Promise<UnmountReason>;
  private state: "mounted" | "unmounting" | "gone" = "mounted";
  private readonly fuse: IiiFuse;
  private readonly guest: GuestFs;
  private readonly watch: NodeJS.Timeout;
  private resolveClosed!: (r: UnmountReason) => void;

  constructor(mountpoint: string, fuse: IiiFuse, guest: GuestFs, watchIntervalMs: number) {
    super();
    this.mountpoint = mountpoint;
    this.fuse = fuse;
    this.guest = guest;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.watch = setInterval(() => this.checkStillMounted(), watchIntervalMs);
    this.watch.unref();
  }

  get mounted(): boolean {
    return this.state === "mounted";
  }

  stats(): MountStats {
    const c = this.fuse.counters;
    this.guest.releasePins();
    const ops = { ...c.ops };
    // Requests the shim answered on libfuse's thread (setattr-shim.c, eighth and ninth jobs).
    const io = this.guest.shimIo?.counts() ?? { ops: {}, bytesRead: 0, bytesWritten: 0 };
    for (const [op, n] of Object.entries(io.ops)) ops[op] = (ops[op] ?? 0) + n;
    return { ops, errors: { ...c.errors }, bytesRead: c.bytesRead + io.bytesRead, bytesWritten: c.bytesWritten + io.bytesWritten, pinnedFiles: this.guest.pinned.size, shimOps: io.ops };
  }

  async memoryAfterGc(): Promise<ServerMemory> {
    return measureAfterGc();
  }

  private checkStillMounted(): void {
    if (this.state !== "mounted") return;
    this.guest.releasePins();
    let present: boolean;
    try {
      present = findMount(readMountTable(), this.mountpoint)?.source === "iii-fs";
    } catch {
      return;
    }
    if (present) return;
    const error = new FilesystemError("ExternalUnmount", `${this.mountpoint} was unmounted by someone else (fusermount -u?)`);
    this.finish({ external: true, error });
    releaseNativeThread(this.fuse);
    if (this.listenerCount("error") > 0) this.emit("error", error);
  }

  private finish(reason: UnmountReason): void {
    this.state = "gone";
    clearInterval(this.watch);
    // Requests still queued behind a lazy unmount get EIO from here on.
    this.guest.close();
    this.resolveClosed(reason);
    this.emit("unmounted", reason);
  }

  async unmount(): Promise<void> {
    if (this.state !== "mounted") {
      await this.closed;
      return;
    }
    this.state = "unmounting";
    try {
      await new Promise<void>((resolve, reject) => this.fuse.unmount((err) => (err ? reject(err) : resolve())));
    } catch (cause) {
      if (findMount(readMountTable(), this.mountpoint)?.source === "iii-fs") {
        this.state = "mounted";
        throw new FilesystemError("UnmountFailed", `could not unmount ${this.mountpoint}`, { cause });
      }
      releaseNativeThread(this.fuse);
    }
    this.finish({ external: false });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.unmount();
  }
}

/**
 * Mounts a host directory (or a lower/upper pair) at `mountpoint` with FUSE and
 * resolves once the kernel has sent INIT, i.e. the mount is usable.
 */
export async function mountPassthrough(options: MountOptions): Promise<MountHandle> {
  if (!options || typeof options.mountpoint !== "string") throw new FilesystemError("InvalidOptions", "mountpoint is required");
  checkHostOwner(options.hostOwner);
  if (options.useIno && options.stableInodes) throw new FilesystemError("InvalidOptions", "useIno and stableInodes are exclusive");
  for (const p of options.protectedPaths ?? []) {
    if (typeof p !== "string" || p === "/" || !isValidGuestPath(p)) {
      throw new FilesystemError("InvalidOptions", `protectedPaths: ${JSON.stringify(p)} must be an absolute guest path below "/" without "." or ".." components`);
    }
  }
  for (const n of options.protectedNames ?? []) {
    if (typeof n !== "string" || nameProblem(n) !== null) {
      throw new FilesystemError("InvalidOptions", `protectedNames: ${JSON.stringify(n)} must be one entry name (not empty, ".", "..", without "/" or NUL, at most 255 bytes)`);
    }
  }
  checkUpperLimit(options);
  options = withBirthTimes(options);
  const isolation = options.isolation ?? "auto";
  if (isolation === "process" || (isolation === "auto" && findServerScript() !== null)) return mountInChild(options);
  if ((options.root === undefined) === (options.layers === undefined)) {
    throw new FilesystemError("InvalidOptions", "exactly one of root or layers is required");
  }
  // Stable numbers are the shim's fifth job: without the shim (no C compiler at build, or in-process) the mount
  // starts on libfuse's numbers, with one warning (before, it failed to start). Decided before the option string
  // (stable numbers ride on use_ino).
  if (options.stableInodes && !enableIno64()) {
    stableInodesOff(options, "the setattr shim is not preloaded (dist/libiii-setattr-shim.so, isolation \"process\")");
    options = { ...options, stableInodes: false };
  }
  const avail = fuseAvailable();
  if (!avail.ok) throw new FilesystemError("FuseUnavailable", avail.reason);

  const mountpoint = path.resolve(options.mountpoint);
  const optionString = buildOptionString(options);
  await cleanupStaleMount(mountpoint);
  checkDir(mountpoint, "MountpointInvalid", "mountpoint");

  let tree: Tree;
  if (options.layers) {
    const lower = checkDir(options.layers.lower, "RootNotFound", "lower layer");
    const upper = checkDir(options.layers.upper, "RootNotFound", "upper layer");
    if (lower === upper) throw new FilesystemError("InvalidOptions", "lower and upper must be different directories");
    tree = new LayeredTree(lower, upper, hostPolicy(options.hostOwner, upper));
  } else {
    const root = checkDir(options.root as string, "RootNotFound", "root");
    tree = new PassthroughTree(root, hostPolicy(options.hostOwner, root));
  }
  for (const dir of [options.root, options.layers?.lower, options.layers?.upper]) {
    if (dir && isAtOrInside(mountpoint, path.resolve(dir))) {
      tree.close();
      throw new FilesystemError("InvalidOptions", `mountpoint ${mountpoint} must not be inside the served directory ${dir}`);
    }
  }
  let virtual: VirtualFiles;
  try {
    virtual = new VirtualFiles(options.virtualFiles);
  } catch (err) {
    tree.close();
    throw err;
  }
  const guest = new GuestFs(tree, virtual, options.readOnly ?? false, options.stableInodes ?? false, options.protectedPaths ?? [], options.protectedNames ?? []);
  if (options.upperLimitBytes !== undefined && options.layers) {
    // On before the mount: nothing lands in upper uncounted.
    const quota = enableDiskQuota(path.resolve(options.layers.upper), options.upperLimitBytes);
    if ("unavailable" in quota) {
      guest.close();
      throw new FilesystemError("DiskLimitUnsupported", `cannot keep the ${options.upperLimitBytes}-byte limit of ${options.layers.upper}: ${quota.unavailable}`);
    }
    guest.quota = quota;
  }
  guest.linkGroups = enableLinkGroups();
  if (guest.linkGroups) guest.hides = shimHides();
  const fuse = new IiiFuse(mountpoint, guest, optionString);
  const fdsBefore = new Set(openFds());
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no FUSE INIT within 15 s")), 15_000);
      fuse.mount((err) => {
        clearTimeout(t);
        if (err) reject(err);
        else resolve();
      });
    });
  } catch (cause) {
    guest.close();
    throw new FilesystemError("MountFailed", `could not mount on ${mountpoint}: ${(cause as Error).message}`, { cause });
  }
  // The shim found libfuse's read/write slots while mounting; until now reads and writes reached the JS handlers.
  guest.shimIo = enableShimIo(guest.shimFastTree());
  // libfuse 2 leaves its /dev/fuse fd and the fusermount auto_unmount socket
  // inheritable: every process spawned later (QEMU, virtiofsd...) would keep the FUSE
  // connection alive after this process dies, leaving a hung mount that auto_unmount
  // never removes (measured). Everything opened by the mount call becomes close-on-exec.
  for (const entry of openFds()) {
    if (!fdsBefore.has(entry) || entry.endsWith(" /dev/fuse")) setCloexec(Number(entry.slice(0, entry.indexOf(" "))));
  }
  return new FuseMount(mountpoint, fuse, guest, options.watchIntervalMs ?? 1000);
}

/** One warning line: the mount at `options.mountpoint` gets libfuse's inode numbers instead of stable ones. */
function stableInodesOff(options: MountOptions, why: string): void {
  process.emitWarning(`stableInodes off for ${path.resolve(options.mountpoint)}: ${why}; inode numbers are libfuse's, new at every mount`, { code: "IiiStableInodesOff" });
}

/**
 * Stable numbers tell a file from a later one on the same host inode number by its birth time (ext4 hands a freed
 * inode out at once). A host file system without birth times (NFS, FUSE, older tmpfs: statx gives no STATX_BTIME,
 * Node's birthtime is 0) gives no such protection, and a reused number would make virtiofsd take the new file for
 * the old one: such a mount gets libfuse's numbers, with one warning (not a failed start).
 */
function withBirthTimes(options: MountOptions): MountOptions {
  if (!options.stableInodes) return options;
  const dirs = options.root !== undefined ? [options.root] : options.layers ? [options.layers.lower, options.layers.upper] : [];
  for (const dir of dirs) {
    let born: bigint;
    try {
      born = fs.statSync(dir, { bigint: true }).birthtimeNs;
    } catch {
      continue; // reported as RootNotFound by the mount
    }
    if (born === 0n) {
      stableInodesOff(options, `${dir} is on a file system without birth times (statx STATX_BTIME)`);
      return { ...options, stableInodes: false };
    }
  }
  return options;
}

/** "fd target" for every open fd (a reused number with a new target counts as new). */
function openFds(): string[] {
  const out: string[] = [];
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      out.push(`${fd} ${fs.readlinkSync(`/proc/self/fd/${fd}`)}`);
    } catch {
      // closed meanwhile (e.g. the fd readdir itself used)
    }
  }
  return out;
}

function isAtOrInside(p: string, dir: string): boolean {
  return p === dir || p.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

/** Unmounts any FUSE mount at `mountpoint` (the CLI's `iii-fs unmount`). */
export async function unmountPath(mountpoint: string): Promise<void> {
  const abs = path.resolve(mountpoint);
  if (!findMount(readMountTable(), abs)) throw new FilesystemError("MountpointInvalid", `nothing is mounted at ${abs}`);
  const r = await runTool("fusermount", ["-u", abs]);
  if (r.code !== 0) {
    const r2 = await runTool("fusermount", ["-uz", abs]);
    if (r2.code !== 0) throw new FilesystemError("UnmountFailed", `fusermount -u ${abs}: ${r.stderr.trim()}`);
  }
}
