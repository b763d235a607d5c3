// The guest caller (uid/gid) of the FUSE request being handled, for ownership of new
// entries. fuse-native does not pass it on and answers on the JS thread, where libfuse's
// fuse_get_context() describes no request; the setattr shim (src/native/setattr-shim.c),
// preloaded into the server process, publishes it for mknod/mkdir/symlink/create.
import path from "node:path";
import { Errno, errnoName, fail } from "./errno.js";
import { loadKoffi } from "./koffi.js";

const SHIM_NAME = "libiii-setattr-shim.so";

let query: ((out: Uint32Array) => number) | null | undefined;
const out = new Uint32Array(3);

function preloadedShim(): string | undefined {
  return (process.env.LD_PRELOAD ?? "").split(/[:\s]+/).find((p) => path.basename(p) === SHIM_NAME);
}

function load(): ((out: Uint32Array) => number) | null {
  const preloaded = preloadedShim();
  if (!preloaded) return null;
  try {
    const koffi = loadKoffi();
    // dlopen of a preloaded library returns the loaded instance.
    const fn = koffi.load(preloaded).func("int iii_fuse_caller(_Out_ uint32_t *out)");
    return (o: Uint32Array) => fn(o) as number;
  } catch {
    return null;
  }
}

/** The caller of the creating request in progress, or null when unknown (no shim, or not inside one). */
export function fuseCaller(): { uid: number; gid: number } | null {
  if (query === undefined) query = load();
  if (!query || query(out) !== 1) return null;
  return { uid: out[0] as number, gid: out[1] as number };
}

/**
 * Tells the preloaded shim to send 64-bit inode numbers (high half taken from st_dev).
 * false when the shim is not preloaded into this process.
 */
export function enableIno64(): boolean {
  const preloaded = preloadedShim();
  if (!preloaded) return false;
  try {
    const koffi = loadKoffi();
    return (koffi.load(preloaded).func("int iii_ino64_enable(void)")() as number) === 1;
  } catch {
    return false;
  }
}

/**
 * Turns on the shim's link groups (st_rdev of a multiply-linked regular file carries a
 * group key) and returns the function that invalidates every cached name of a group,
 * or null when the shim is not preloaded.
 */
export function enableLinkGroups(): ((key: number) => number) | null {
  const preloaded = preloadedShim();
  if (!preloaded) return null;
  try {
    const koffi = loadKoffi();
    const lib = koffi.load(preloaded);
    const inval = lib.func("int iii_inval_link_group(uint32_t key)");
    if ((lib.func("int iii_link_groups_enable(void)")() as number) !== 1) return null;
    return (key: number) => inval(key) as number;
  } catch {
    return null;
  }
}

/** The node whose name the RENAME being answered hides (0: none); whether a rename replaces that name. */
export interface ShimHides {
  hiding(): number;
  replacing(): boolean;
  takeReleased(): number[];
}

/**
 * The shim's hides (its sixth job, see pinned-files.ts), or null when the shim is not preloaded. Needs link
 * groups on: the shim hides only names of nodes it knows to be in a link group.
 */
export function shimHides(): ShimHides | null {
  const preloaded = preloadedShim();
  if (!preloaded) return null;
  try {
    const koffi = loadKoffi();
    const lib = koffi.load(preloaded);
    const hiding = lib.func("uint64_t iii_hiding(void)");
    const take = lib.func("int iii_take_released(_Out_ uint64_t *out, int max)");
    const replaced = lib.func("int iii_hiding_replaced(void)");
    const buf = new BigUint64Array(256);
    return {
      hiding: () => Number(hiding() as number | bigint),
      replacing: () => (replaced() as number) === 1,
      takeReleased: () => {
        const out: number[] = [];
        for (;;) {
          const n = take(buf, buf.length) as number;
          for (let i = 0; i < n; i++) out.push(Number(buf[i]));
          if (n < buf.length) return out;
        }
      },
    };
  } catch {
    return null;
  }
}

/** The shim's reads and writes (its eighth job) and plain-tree getattr/readdir/open/create/mkdir/chmod/chown/utimens/flush/release (ninth) on libfuse's thread. */
export interface ShimIo {
  /** Waits for requests in flight; later ones reach the JS handlers. */
  stop(): void;
  /** Requests the shim answered, by FUSE operation name, and the bytes it read and wrote. */
  counts(): { ops: Record<string, number>; bytesRead: number; bytesWritten: number };
  /** The ninth job is on. */
  readonly fast: boolean;
}

/** What the shim's ninth job needs: a plain tree's root fd, and what the JS side keeps. */
export interface ShimFastTree {
  rootFd: number;
  /** First path components the JS side answers (virtual files, protected paths); "/<name>": a component anywhere (protected names). */
  jsNames: string[];
  /** Regular files with several host links go to the JS side (link groups). */
  linkedToJs: boolean;
  /** Mutations (open for write, chmod, chown, utimens, create, mkdir) answered by the shim: not on a read-only mount. */
  utimens: boolean;
  /** Host owner of what create and mkdir make (the tree's hostOwner). */
  owner: { uid: number; gid: number };
  /** Stable inode numbers (inode-numbers.ts), computed by the shim for what it answers; needs enableIno64(). */
  stableInodes: boolean;
}

/**
 * Turns on the shim's reads and writes, and with `fast` its plain-tree getattr/utimens/flush/release; null when
 * the shim is not preloaded (or found no libfuse slots).
 */
export function enableShimIo(fast: ShimFastTree | null): ShimIo | null {
  const preloaded = preloadedShim();
  if (!preloaded) return null;
  let stopIo: (() => void) | undefined;
  try {
    const koffi = loadKoffi();
    const lib = koffi.load(preloaded);
    const stop = lib.func("void iii_io_stop(void)");
    const ioCounts = lib.func("void iii_io_counts(_Out_ uint64_t *out)");
    const fastCounts = lib.func("void iii_fast_counts(_Out_ uint64_t *out)");
    if ((lib.func("int iii_io_enable(void)")() as number) !== 1) return null;
    stopIo = () => void stop();
    let fastOn = false;
    // Stable numbers the shim cannot compute (no 64-bit replies): every lookup stays on the JS side.
    if (fast?.stableInodes && (lib.func("int iii_fast_stable_enable(void)")() as number) !== 1) fast = null;
    if (fast) {
      const skip = Buffer.from(fast.jsNames.map((n) => `${n}\0`).join(""));
      const enable = lib.func("int iii_fast_enable(int root_fd, const uint8_t *skip, int skip_len, int linked_to_js, int utimens_on)");
      fastOn = (enable(fast.rootFd, skip, skip.length, fast.linkedToJs ? 1 : 0, fast.utimens ? 1 : 0) as number) === 1;
      if (fastOn && fast.utimens) lib.func("int iii_fast_create_enable(uint32_t uid, uint32_t gid)")(fast.owner.uid, fast.owner.gid);
    }
    const io = new BigUint64Array(4);
    const fc = new BigUint64Array(10);
    return {
      fast: fastOn,
      stop: () => void stop(),
      counts: () => {
        ioCounts(io);
        fastCounts(fc);
        const ops: Record<string, number> = {};
        const names = ["read", "write", "getattr", "utimens", "flush", "release", "chmod", "chown", "open", "readdir", "create", "mkdir"];
        const values = [io[0], io[2], fc[0], fc[1], fc[2], fc[3], fc[4], fc[5], fc[6], fc[7], fc[8], fc[9]];
        names.forEach((n, i) => {
          const v = Number(values[i]);
          if (v > 0) ops[n] = v;
        });
        return { ops, bytesRead: Number(io[1]), bytesWritten: Number(io[3]) };
      },
    };
  } catch {
    // IO the shim already took over goes back to the JS handlers: nothing would stop it before the fds close.
    stopIo?.();
    return null;
  }
}

/** The writable layer's disk limit, kept by the shim (setattr-shim.c, tenth job). */
export interface DiskQuota {
  /** Charges `bytes` of growth and `entries` new entries of the upper layer; throws ENOSPC when it would pass a limit. */
  charge(bytes: number, entries?: number): void;
  /** Charges one new entry of upper: QUOTA_ENTRY_BYTES plus the `dataBytes` it brings (a copied-up file's size). */
  chargeEntry(dataBytes?: number): void;
  /** A file going from `from` to `to` bytes: the growth is charged, a shrink may give space back. */
  resize(from: number, to: number): void;
  /** Runs a rename inside upper with the shim's count held off (a subtree moved behind its walk would be missed). */
  renaming<T>(fn: () => T): T;
  /** Something may have freed space: the next refusal counts the upper layer again. */
  freed(): void;
  /** Bytes and entries charged (as of the last count, plus growth since), the limits, counts of the tree, refused charges. */
  state(): { usedBytes: number; limitBytes: number; usedEntries: number; limitEntries: number; counts: number; refusals: number };
}

/** What one entry of upper costs beyond its data (setattr-shim.c's QUOTA_ENTRY_BYTES, which its counts use). */
const QUOTA_ENTRY_BYTES = 1024;

/** The entry limit that goes with a byte limit: one entry per 8 KiB (twice ext4's default inode density), at least 4,096. */
export function entryLimitFor(limitBytes: number): number {
  return Math.max(4096, Math.floor(limitBytes / 8192));
}

/** Largest charge passed to the shim (an int64 there): a guest's `truncate -s 8E` is refused, not wrapped. */
const MAX_CHARGE = 2 ** 62;

/**
 * Turns on the shim's disk limit for `upper` (counted once now), or a reason it cannot: the shim is not
 * preloaded into this process, or the count failed.
 */
export function enableDiskQuota(upper: string, limitBytes: number): DiskQuota | { unavailable: string } {
  const preloaded = preloadedShim();
  if (!preloaded) return { unavailable: "the setattr shim is not preloaded (dist/libiii-setattr-shim.so, isolation \"process\")" };
  const koffi = loadKoffi();
  const lib = koffi.load(preloaded);
  const rc = lib.func("int iii_quota_enable(const char *upper, int64_t limit, int64_t entry_limit)")(upper, limitBytes, entryLimitFor(limitBytes)) as number;
  if (rc !== 1) return { unavailable: `counting ${upper} failed (${errnoName(rc)})` };
  const charge = lib.func("int iii_quota_charge2(int64_t bytes, int64_t entries)");
  const freed = lib.func("void iii_quota_freed(void)");
  const renameBegin = lib.func("void iii_quota_rename_begin(void)");
  const renameEnd = lib.func("void iii_quota_rename_end(void)");
  const stateFn = lib.func("void iii_quota_state(_Out_ int64_t *out)");
  const out = new BigInt64Array(6);
  const chargeFn = (bytes: number, entries = 0): void => {
    const b = Math.min(Math.max(0, Math.ceil(bytes)), MAX_CHARGE);
    if ((b > 0 || entries > 0) && (charge(b, entries) as number) !== 0) fail(Errno.ENOSPC, "disk limit of the writable layer");
  };
  return {
    charge: chargeFn,
    chargeEntry: (dataBytes = 0) => chargeFn(QUOTA_ENTRY_BYTES + dataBytes, 1),
    resize: (from, to) => {
      if (to > from) chargeFn(to - from);
      else if (to < from) void freed();
    },
    renaming: (fn) => {
      renameBegin();
      try {
        return fn();
      } finally {
        renameEnd();
      }
    },
    freed: () => void freed(),
    state: () => {
      stateFn(out);
      return {
        usedBytes: Number(out[0]),
        limitBytes: Number(out[1]),
        counts: Number(out[2]),
        refusals: Number(out[3]),
        usedEntries: Number(out[4]),
        limitEntries: Number(out[5]),
      };
    },
  };
}
