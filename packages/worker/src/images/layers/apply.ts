import { createRequire } from "node:module";
import {
  chmodSync,
  closeSync,
  constants as fsConstants,
  fchmodSync,
  fchownSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { IiiError } from "../../errors.js";
import { fileSha256, newSha256 } from "../digest.js";
import { pumpLayer, type LayerCompression } from "./decompress.js";
import { DEFAULT_LAYER_LIMITS, LayerBudget, layerRejected, planEntry, type LayerLimits, type PlannedEntry } from "./policy.js";
import { RootResolver } from "./safe-root.js";
import { scanLayer, type LayerSource, type ScannedLayer } from "./scan.js";
import { TarReader } from "./tar-reader.js";
import { wrapReadError } from "./tar-entries.js";

export { scanLayer, type LayerSource, type ScannedLayer } from "./scan.js";

export interface ApplyOptions {
  limits?: Partial<LayerLimits>;
  keepSetuid?: boolean;
  signal?: AbortSignal;
  /** Called with the number of uncompressed bytes consumed, for progress bars. */
  onBytes?: (bytes: number) => void;
}

export interface LayerReport {
  label: string;
  compression: LayerCompression;
  entries: number;
  /** Entries not materialised (device nodes), as "name: reason". */
  skipped: string[];
}

/** The per-layer label used in every error: `layer 2/3 (sha256:0123456789ab)`. */
export function layerLabel(index: number, count: number, digest?: string): string {
  return `layer ${index + 1}/${count}${digest ? ` (${digest.slice(0, 19)})` : ""}`;
}

/**
 * Entries keep the image's owners (as root) and modes on the host, 1777 /var/tmp and a uid-1000 /app included: the
 * guest sees them through the filesystem's view, and other local users never reach them because the cache above
 * every rootfs (III_HOME/images) is 0700 (ImageStore.init). That parent is the boundary, not these modes.
 */
const canChown = typeof process.getuid === "function" && process.getuid() === 0;

/** State shared by the layers of one image: the resolver keeps its cache of known directories. */
export class RootfsBuilder {
  readonly resolver: RootResolver;
  /**
   * Files, directories, links and FIFOs this builder created, over every layer, the parent directories entries
   * imply included: those are inodes on the host's disk that no entry count saw. A 100 KB layer of 20,000 entries
   * `NNNNNN/a/a/…/a` (121 components) made 2.4 million directories, ~10 GB of directory blocks (review rev6h).
   */
  private made = 0;
  private maxMade: number = DEFAULT_LAYER_LIMITS.maxImageEntries;

  constructor(readonly root: string) {
    this.resolver = new RootResolver(root, (context) => this.charge(context.label, context.name));
    if (readdirSync(root).length === 0) this.resolver.freshDirs.add("");
  }

  /** Counts one inode about to be made; refuses the image past maxImageEntries. */
  private charge(label: string, name: string): void {
    if (++this.made > this.maxMade) {
      throw layerRejected(label, name, `the image makes more than ${this.maxMade} files and directories (its entries and the parent directories their paths imply)`);
    }
  }

  /**
   * Pass 2: applies one layer; given its scan, from the uncompressed tar the scan left (no second decompression).
   * Every policy check runs again; the scan is an early-out, not a trust boundary. Synchronous per 64 KiB step
   * (see pumpLayer): file bodies go from the reader's reused buffer straight to write(2).
   */
  async applyLayer(source: LayerSource, label: string, options: ApplyOptions = {}, scanned?: ScannedLayer): Promise<LayerReport> {
    const limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
    this.maxMade = limits.maxImageEntries;
    const policy = { limits, keepSetuid: options.keepSetuid ?? false, label };
    const budget = new LayerBudget(limits);
    const report: LayerReport = { label, compression: scanned?.compression ?? "none", entries: 0, skipped: [] };
    /** Real paths this layer created: whiteouts only hide what lower layers put there (image-spec, layer.md). */
    const created = new Set<string>();
    const dirTimes: Array<[string, Date]> = [];
    let file: { fd: number; entry: Extract<PlannedEntry, { kind: "file" }>; key: string; written: number } | undefined;
    const reader = new TarReader({
      entry: (header) => {
        const entry = planEntry(header, policy);
        budget.account(entry, label);
        report.entries += 1;
        if (entry.kind !== "file") {
          this.applyEntry(entry, label, created, dirTimes, report);
          return;
        }
        const { host, key } = this.prepare(entry, label, false);
        // O_EXCL|O_NOFOLLOW: the path was just cleared, so this can only create a new regular file. Sync calls: an
        // async fs call costs a thread-pool round trip, which dominated extraction of many small files (measured 10x).
        const fd = openSync(host, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
        file = { fd, entry, key, written: 0 };
      },
      data: (chunk) => {
        if (!file) return;
        file.written += chunk.length;
        if (file.written > file.entry.size) throw layerRejected(label, file.entry.name, "more data than its header declares");
        for (let offset = 0; offset < chunk.length; ) offset += writeSync(file.fd, chunk, offset);
      },
      end: () => {
        if (!file) return;
        const { fd, entry, key } = file;
        file = undefined;
        try {
          // A file created by root is already 0:0.
          if (canChown && (entry.uid !== 0 || entry.gid !== 0)) fchownSync(fd, entry.uid, entry.gid);
          // chmod after chown: chown clears setuid bits.
          fchmodSync(fd, entry.mode);
          futimesSync(fd, entry.mtime, entry.mtime);
        } finally {
          closeSync(fd);
        }
        created.add(key);
      },
    });
    const path = scanned ? scanned.tarPath : source.path;
    const compression = scanned ? (scanned.spilled ? "none" : scanned.compression) : undefined;
    // A layer the scan did not copy (uncompressed: the blob itself) is read a second time here. Unless it sits in the
    // cache, verified when stored, whoever can write it (an `oci:` layout's owner, a racing process) could change it
    // after the scan checked it: hash what is read and refuse the image when it is not what the scan checked (review
    // host-s16 #4). The scan now hashes an uncompressed blob once (its digest and diff_id cover the same bytes), which
    // pays for this: a 1 GiB `oci:` layer (4 MiB files) unpacked in 1.01x the time before the fix (median of 9
    // rounds); copying the layer during the scan instead took 1.12x, with more spread (writeback) and a layer-sized
    // file in the cache meanwhile.
    const recheck = scanned && !scanned.spilled && !source.verified ? { hash: newSha256(), bytes: 0 } : undefined;
    try {
      const onBytes = options.onBytes;
      const tar = recheck
        ? (chunk: Uint8Array) => {
            recheck.bytes += chunk.length;
            if (recheck.bytes > scanned!.tarBytes) throw changedSinceScan(label, scanned!, "it is longer than when its digest was checked");
            recheck.hash.update(chunk);
            reader.push(chunk);
          }
        : (chunk: Uint8Array) => reader.push(chunk);
      const pumped = await pumpLayer(path, onBytes ? (chunk) => onBytes(chunk.length) : undefined, tar, {
        ...(compression ? { compression } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      reader.finish();
      if (!scanned) report.compression = pumped.compression;
    } catch (error) {
      if (file) closeSync(file.fd);
      file = undefined;
      // Bytes changed under the apply break it wherever they first stop parsing (a cut archive, a bad header, a
      // refused entry): when the file is no longer what the scan checked, that is the error to report.
      if (recheck && !options.signal?.aborted && !isChangedSinceScan(error)) {
        const now = await fileSha256(path);
        if (now !== scanned!.tarDigest) throw changedSinceScan(label, scanned!, `read now as ${now ?? "unreadable"}`, wrapReadError(error, label));
      }
      throw wrapReadError(error, label);
    } finally {
      if (file) closeSync(file.fd);
    }
    if (recheck) {
      const read = `sha256:${recheck.hash.digest("hex")}`;
      if (read !== scanned!.tarDigest) throw changedSinceScan(label, scanned!, `read now as ${read}`);
    }
    // Directory times last: creating children updates them. By then a later entry of the layer may have put a symlink
    // where the directory, or one above it, was (`d/` then `d -> /etc/passwd`), and utimes(2) follows links: the
    // host's file got the image's times (review rev6h). Only a path that is still directories all the way down, no
    // link in it, gets its time, and lutimes does not follow the last component in any case.
    const realDirs = new Set<string>([this.root]);
    const isRealDir = (path: string): boolean => {
      if (realDirs.has(path)) return true;
      const parent = dirname(path);
      if (parent === path || !path.startsWith(this.root) || !isRealDir(parent)) return false;
      const ok = lstatSync(path, { throwIfNoEntry: false })?.isDirectory() === true;
      if (ok) realDirs.add(path);
      return ok;
    };
    for (let i = dirTimes.length - 1; i >= 0; i--) {
      const [path, time] = dirTimes[i]!;
      try {
        if (isRealDir(path)) lutimesSync(path, time, time);
      } catch {
        // a directory removed by a later whiteout of the same layer
      }
    }
    return report;
  }

  /** Resolves the parent of an entry and clears whatever is at its final path (unless both are directories). */
  private prepare(entry: PlannedEntry, label: string, keepDirectory: boolean): { host: string; key: string; existingDir: boolean } {
    const parent = this.resolver.resolveDir(entry.components.slice(0, -1), true, { label, name: entry.name });
    const parentKey = parent!.join("/");
    const components = [...parent!, entry.components[entry.components.length - 1]!];
    const host = join(this.root, ...components);
    const key = components.join("/");
    const existing = this.resolver.knownAbsent(parentKey, key) ? undefined : lstatSync(host, { throwIfNoEntry: false });
    if (existing) {
      if (keepDirectory && existing.isDirectory()) return { host, key, existingDir: true };
      rmSync(host, { recursive: true, force: true });
      this.resolver.forget();
    }
    this.charge(label, entry.name);
    this.resolver.created.add(key);
    return { host, key, existingDir: false };
  }

  private setOwner(host: string, entry: PlannedEntry): void {
    if (canChown) lchownSync(host, entry.uid, entry.gid);
  }

  private applyEntry(entry: PlannedEntry, label: string, created: Set<string>, dirTimes: Array<[string, Date]>, report: LayerReport): void {
    const context = { label, name: entry.name };
    switch (entry.kind) {
      case "directory": {
        if (entry.components.length === 0) {
          this.setOwner(this.root, entry);
          chmodSync(this.root, entry.mode);
          dirTimes.push([this.root, entry.mtime]);
          return;
        }
        const { host, key, existingDir } = this.prepare(entry, label, true);
        if (!existingDir) {
          mkdirSync(host, { mode: 0o700 });
          this.resolver.freshDirs.add(key);
        }
        this.setOwner(host, entry);
        chmodSync(host, entry.mode);
        dirTimes.push([host, entry.mtime]);
        created.add(key);
        return;
      }
      case "symlink": {
        const { host, key } = this.prepare(entry, label, false);
        symlinkSync(entry.target, host);
        this.setOwner(host, entry);
        try {
          lutimesSync(host, entry.mtime, entry.mtime);
        } catch {
          // link times are cosmetic
        }
        created.add(key);
        return;
      }
      case "hardlink": {
        const targetParent = this.resolver.resolveDir(entry.targetComponents.slice(0, -1), false, context);
        const targetHost = targetParent && join(this.root, ...targetParent, entry.targetComponents[entry.targetComponents.length - 1]!);
        const targetStats = targetHost ? lstatSync(targetHost, { throwIfNoEntry: false }) : undefined;
        if (!targetHost || !targetStats) {
          throw layerRejected(label, entry.name, `hardlink target ${JSON.stringify(entry.targetComponents.join("/"))} does not exist in the rootfs`);
        }
        if (targetStats.isDirectory()) throw layerRejected(label, entry.name, "hardlink to a directory");
        const { host, key } = this.prepare(entry, label, false);
        if (host === targetHost) return;
        // link(2) does not follow a symlink target, so a link to a symlink stays a link to the symlink.
        linkSync(targetHost, host);
        created.add(key);
        return;
      }
      case "fifo": {
        const { host, key } = this.prepare(entry, label, false);
        childProcess().execFileSync("mkfifo", ["-m", (entry.mode & 0o777).toString(8), host]);
        this.setOwner(host, entry);
        chmodSync(host, entry.mode);
        created.add(key);
        return;
      }
      case "whiteout": {
        const parent = this.resolver.resolveDir(entry.components.slice(0, -1), false, context);
        if (!parent) return;
        const components = [...parent, entry.components[entry.components.length - 1]!];
        if (created.has(components.join("/"))) return;
        rmSync(join(this.root, ...components), { recursive: true, force: true });
        this.resolver.forget();
        return;
      }
      case "opaque": {
        const dir = this.resolver.resolveDir(entry.components, false, context);
        if (!dir) return;
        const host = join(this.root, ...dir);
        const prefix = dir.length === 0 ? "" : `${dir.join("/")}/`;
        for (const child of readdirSync(host)) {
          if (created.has(`${prefix}${child}`)) continue;
          rmSync(join(host, child), { recursive: true, force: true });
        }
        this.resolver.forget();
        return;
      }
      case "skip":
        report.skipped.push(`${entry.name}: ${entry.reason}`);
        return;
      case "file":
        throw new Error("unreachable: files are written by applyLayer's visitor");
    }
  }
}

/**
 * The layer file changed between the scan that checked its digest and the apply that read it again (an uncompressed
 * layer of an `oci:` layout is applied from the layout's own file): what was applied is not what the digest covers.
 */
const changedSinceScanErrors = new WeakSet<Error>();

function changedSinceScan(label: string, scanned: ScannedLayer, how: string, cause?: unknown): IiiError {
  const error = new IiiError(
    "ImageInvalid",
    `${label}: the layer file ${scanned.tarPath} changed while it was unpacked (checked as ${scanned.tarDigest}, ${how}); nothing was cached: make sure nothing writes the image's files during a pull, and pull again`,
    cause === undefined ? {} : { cause },
  );
  changedSinceScanErrors.add(error);
  return error;
}

function isChangedSinceScan(error: unknown): boolean {
  return error instanceof Error && changedSinceScanErrors.has(error);
}

/** Empties `root` (never following a symlink out of it): a rootfs missing a layer, or half of one, is wrong. */
async function rollBack(root: string): Promise<void> {
  for (const child of readdirSync(root)) await rm(join(root, child), { recursive: true, force: true });
}

/**
 * Applies layers in order into `root` (an empty directory). Each layer is scanned (pass 1: its one
 * decompression, digests, policy; the tar goes to a spill file beside `root`) before it is applied (pass 2);
 * the scan of layer i+1 runs while layer i is applied, and `ready(i)` lets layer i wait for its download while
 * earlier layers are already unpacking. When any layer fails (a digest mismatch, a refused entry), `root` is
 * emptied again: the target never keeps a half-applied or wrong layer.
 */
export async function applyLayers(
  root: string,
  layers: LayerSource[],
  options: ApplyOptions = {},
  ready?: (index: number) => Promise<void>,
): Promise<LayerReport[]> {
  const limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
  const budget = new LayerBudget(limits);
  const builder = new RootfsBuilder(root);
  const startedEmpty = builder.resolver.freshDirs.has("");
  const labels = layers.map((layer, i) => layerLabel(i, layers.length, layer.digest));
  const trace = process.env.III_IMAGES_TRACE ? (line: string) => process.stderr.write(`[images] ${line}\n`) : undefined;
  const spillDir = await mkdtemp(join(dirname(root), ".iii-layers-"));
  // Date.now(), not performance.now(): the first use of the global performance loads perf_hooks (~0.4 MB of RSS).
  const scanTimes: string[] = [];
  const scan = async (i: number): Promise<ScannedLayer> => {
    const t0 = Date.now();
    await ready?.(i);
    const t1 = Date.now();
    const scanned = await scanLayer(layers[i]!, labels[i]!, budget, options, join(spillDir, `${i}.tar`));
    scanTimes[i] = `waited ${(t1 - t0).toFixed(0)} ms, scan ${(Date.now() - t1).toFixed(0)} ms`;
    return scanned;
  };
  const reports: LayerReport[] = [];
  let pending: Promise<ScannedLayer> | undefined = layers.length > 0 ? scan(0) : undefined;
  try {
    for (let i = 0; i < layers.length; i++) {
      const scanned = await pending!;
      pending = i + 1 < layers.length ? scan(i + 1) : undefined;
      pending?.catch(() => undefined);
      const t0 = Date.now();
      const report = await builder.applyLayer(layers[i]!, labels[i]!, options, scanned);
      if (scanned.spilled) await rm(scanned.tarPath, { force: true });
      reports.push(report);
      trace?.(`${labels[i]}: ${scanTimes[i]}, apply ${(Date.now() - t0).toFixed(0)} ms, ${report.entries} entries, ${report.compression}`);
    }
  } catch (error) {
    // never leave a scan reading a blob behind a failed apply
    await pending?.catch(() => undefined);
    if (startedEmpty) await rollBack(root);
    throw error;
  } finally {
    await rm(spillDir, { recursive: true, force: true });
  }
  return reports;
}

/** node:child_process (and the dgram/net internals it brings) loads only for an image with a FIFO: ~0.4 MB of a pull's RSS. */
function childProcess(): typeof import("node:child_process") {
  return createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");
}
