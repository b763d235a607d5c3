import { execFile } from "node:child_process";
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
  symlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { promisify } from "node:util";
import { extract as tarExtract } from "tar-stream";
import { IiiError } from "../../errors.js";
import { newSha256 } from "../digest.js";
import { openLayerFile, type LayerCompression } from "./decompress.js";
import { DEFAULT_LAYER_LIMITS, LayerBudget, layerRejected, planEntry, type LayerLimits, type PlannedEntry, type TarHeaderLike } from "./policy.js";
import { RootResolver } from "./safe-root.js";

const execFileAsync = promisify(execFile);

export interface LayerSource {
  /** Path of the (possibly compressed) layer blob. */
  path: string;
  /** Expected blob digest; checked while scanning unless `verified`. */
  digest?: string;
  /** The blob was verified against `digest` when it was stored (registry downloads): skip hashing it again. */
  verified?: boolean;
  /** Expected uncompressed digest (the image config's rootfs.diff_ids entry); checked while scanning. */
  diffId?: string;
}

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

const canChown = typeof process.getuid === "function" && process.getuid() === 0;

async function forEachEntry(
  tar: Readable,
  signal: AbortSignal | undefined,
  visit: (header: TarHeaderLike, body: Readable) => Promise<void>,
): Promise<void> {
  const extractor = tarExtract();
  tar.on("error", (error) => extractor.destroy(error));
  tar.pipe(extractor);
  const abort = () => extractor.destroy(signal?.reason instanceof Error ? signal.reason : new Error("aborted"));
  signal?.addEventListener("abort", abort, { once: true });
  try {
    signal?.throwIfAborted();
    for await (const entry of extractor) {
      await visit(entry.header as unknown as TarHeaderLike, entry as unknown as Readable);
    }
  } finally {
    signal?.removeEventListener("abort", abort);
    tar.unpipe(extractor);
    tar.destroy();
  }
}

function wrapReadError(error: unknown, label: string): unknown {
  if (error instanceof IiiError) return error;
  return new IiiError("ImageInvalid", `${label}: cannot read the layer: ${(error as Error).message}`, { cause: error });
}

/**
 * Pass 1: reads every header and checks paths, entry count, sizes and depth (and the blob and diff digests)
 * before anything touches the disk, so a hostile layer is refused without creating a million files first.
 */
export async function scanLayer(
  source: LayerSource,
  label: string,
  budget: LayerBudget,
  options: ApplyOptions = {},
): Promise<{ compression: LayerCompression; entries: number }> {
  const limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
  const opened = await openLayerFile(source.path);
  const blobHash = newSha256();
  const diffHash = newSha256();
  const hashBlob = source.digest !== undefined && !source.verified;
  if (hashBlob) opened.raw.on("data", (chunk: Buffer) => blobHash.update(chunk));
  opened.tar.on("data", (chunk: Buffer) => diffHash.update(chunk));
  budget.startLayer();
  let entries = 0;
  try {
    await forEachEntry(opened.tar, options.signal, async (header, body) => {
      const planned = planEntry(header, { limits, keepSetuid: options.keepSetuid ?? false, label });
      budget.account(planned, label);
      entries += 1;
      body.resume();
      await new Promise<void>((resolve, reject) => {
        body.on("end", resolve);
        body.on("error", reject);
      });
    });
  } catch (error) {
    throw wrapReadError(error, label);
  }
  // tar-stream consumes everything after the end-of-archive blocks too, so both hashes cover the whole blob.
  const check = (expected: string | undefined, actual: string, what: string) => {
    if (expected && expected !== actual) {
      throw new IiiError("ImageInvalid", `${label}: ${what} mismatch: expected ${expected}, got ${actual}`);
    }
  };
  if (hashBlob) check(source.digest, `sha256:${blobHash.digest("hex")}`, "blob digest");
  check(source.diffId, `sha256:${diffHash.digest("hex")}`, "uncompressed layer digest (diff_id)");
  return { compression: opened.compression, entries };
}

/** State shared by the layers of one image: the resolver keeps its cache of known directories. */
export class RootfsBuilder {
  readonly resolver: RootResolver;

  constructor(readonly root: string) {
    this.resolver = new RootResolver(root);
    if (readdirSync(root).length === 0) this.resolver.freshDirs.add("");
  }

  /** Pass 2: applies one scanned layer. Every policy check runs again; the scan is an early-out, not a trust boundary. */
  async applyLayer(source: LayerSource, label: string, options: ApplyOptions = {}): Promise<LayerReport> {
    const limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
    const keepSetuid = options.keepSetuid ?? false;
    const opened = await openLayerFile(source.path);
    if (options.onBytes) opened.raw.on("data", (chunk: Buffer) => options.onBytes!(chunk.length));
    const budget = new LayerBudget(limits);
    const report: LayerReport = { label, compression: opened.compression, entries: 0, skipped: [] };
    /** Real paths this layer created: whiteouts only hide what lower layers put there (image-spec, layer.md). */
    const created = new Set<string>();
    const dirTimes: Array<[string, Date]> = [];
    try {
      await forEachEntry(opened.tar, options.signal, async (header, body) => {
        const entry = planEntry(header, { limits, keepSetuid, label });
        budget.account(entry, label);
        report.entries += 1;
        if (entry.kind === "file") {
          await this.writeFile(entry, body, label, created);
          return;
        }
        body.resume();
        await this.applyEntry(entry, label, created, dirTimes, report);
      });
    } catch (error) {
      throw wrapReadError(error, label);
    }
    // Directory times last: creating children updates them.
    for (let i = dirTimes.length - 1; i >= 0; i--) {
      const [path, time] = dirTimes[i]!;
      try {
        utimesSync(path, time, time);
      } catch {
        // a directory removed by a later whiteout of the same layer
      }
    }
    return report;
  }

  /** Resolves the parent of an entry and clears whatever is at its final path (unless both are directories). */
  private async prepare(
    entry: PlannedEntry,
    label: string,
    keepDirectory: boolean,
  ): Promise<{ host: string; key: string; existingDir: boolean }> {
    const parent = await this.resolver.resolveDir(entry.components.slice(0, -1), true, { label, name: entry.name });
    const parentKey = parent!.join("/");
    const components = [...parent!, entry.components[entry.components.length - 1]!];
    const host = join(this.root, ...components);
    const key = components.join("/");
    const existing = this.resolver.knownAbsent(parentKey, key) ? undefined : lstatSync(host, { throwIfNoEntry: false });
    if (existing) {
      if (keepDirectory && existing.isDirectory()) return { host, key, existingDir: true };
      await rm(host, { recursive: true, force: true });
      this.resolver.forget();
    }
    this.resolver.created.add(key);
    return { host, key, existingDir: false };
  }

  private setOwner(host: string, entry: PlannedEntry): void {
    if (canChown) lchownSync(host, entry.uid, entry.gid);
  }

  private async writeFile(
    entry: Extract<PlannedEntry, { kind: "file" }>,
    body: Readable,
    label: string,
    created: Set<string>,
  ): Promise<void> {
    const { host, key } = await this.prepare(entry, label, false);
    // O_EXCL|O_NOFOLLOW: the path was just cleared, so this can only create a new regular file. Sync calls: an
    // async fs call costs a thread-pool round trip, which dominated extraction of many small files (measured 10x).
    const fd = openSync(host, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
    try {
      let written = 0;
      for await (const chunk of body) {
        const buffer = chunk as Buffer;
        written += buffer.length;
        if (written > entry.size) throw layerRejected(label, entry.name, "more data than its header declares");
        let offset = 0;
        while (offset < buffer.length) offset += writeSync(fd, buffer, offset);
      }
      // A file created by root is already 0:0.
      if (canChown && (entry.uid !== 0 || entry.gid !== 0)) fchownSync(fd, entry.uid, entry.gid);
      // chmod after chown: chown clears setuid bits.
      fchmodSync(fd, entry.mode);
      futimesSync(fd, entry.mtime, entry.mtime);
    } finally {
      closeSync(fd);
    }
    created.add(key);
  }

  private async applyEntry(
    entry: PlannedEntry,
    label: string,
    created: Set<string>,
    dirTimes: Array<[string, Date]>,
    report: LayerReport,
  ): Promise<void> {
    const context = { label, name: entry.name };
    switch (entry.kind) {
      case "directory": {
        if (entry.components.length === 0) {
          this.setOwner(this.root, entry);
          chmodSync(this.root, entry.mode);
          dirTimes.push([this.root, entry.mtime]);
          return;
        }
        const { host, key, existingDir } = await this.prepare(entry, label, true);
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
        const { host, key } = await this.prepare(entry, label, false);
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
        const targetParent = await this.resolver.resolveDir(entry.targetComponents.slice(0, -1), false, context);
        const targetHost = targetParent && join(this.root, ...targetParent, entry.targetComponents[entry.targetComponents.length - 1]!);
        const targetStats = targetHost ? lstatSync(targetHost, { throwIfNoEntry: false }) : undefined;
        if (!targetHost || !targetStats) {
          throw layerRejected(label, entry.name, `hardlink target ${JSON.stringify(entry.targetComponents.join("/"))} does not exist in the rootfs`);
        }
        if (targetStats.isDirectory()) throw layerRejected(label, entry.name, "hardlink to a directory");
        const { host, key } = await this.prepare(entry, label, false);
        if (host === targetHost) return;
        // link(2) does not follow a symlink target, so a link to a symlink stays a link to the symlink.
        linkSync(targetHost, host);
        created.add(key);
        return;
      }
      case "fifo": {
        const { host, key } = await this.prepare(entry, label, false);
        await execFileAsync("mkfifo", ["-m", (entry.mode & 0o777).toString(8), host]);
        this.setOwner(host, entry);
        chmodSync(host, entry.mode);
        created.add(key);
        return;
      }
      case "whiteout": {
        const parent = await this.resolver.resolveDir(entry.components.slice(0, -1), false, context);
        if (!parent) return;
        const components = [...parent, entry.components[entry.components.length - 1]!];
        if (created.has(components.join("/"))) return;
        await rm(join(this.root, ...components), { recursive: true, force: true });
        this.resolver.forget();
        return;
      }
      case "opaque": {
        const dir = await this.resolver.resolveDir(entry.components, false, context);
        if (!dir) return;
        const host = join(this.root, ...dir);
        const prefix = dir.length === 0 ? "" : `${dir.join("/")}/`;
        for (const child of await readdir(host)) {
          if (created.has(`${prefix}${child}`)) continue;
          await rm(join(host, child), { recursive: true, force: true });
        }
        this.resolver.forget();
        return;
      }
      case "skip":
        report.skipped.push(`${entry.name}: ${entry.reason}`);
        return;
      case "file":
        throw new Error("unreachable: files are written by writeFile");
    }
  }
}

/**
 * Applies layers in order into `root` (an empty directory). Each layer is scanned (pass 1) before it is applied
 * (pass 2); the scan of layer i+1 runs while layer i is applied, and `ready(i)` lets layer i wait for its
 * download while earlier layers are already unpacking.
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
  const labels = layers.map((layer, i) => layerLabel(i, layers.length, layer.digest));
  const trace = process.env.III_IMAGES_TRACE ? (line: string) => process.stderr.write(`[images] ${line}\n`) : undefined;
  const scanTimes: string[] = [];
  const scan = async (i: number) => {
    const t0 = performance.now();
    await ready?.(i);
    const t1 = performance.now();
    await scanLayer(layers[i]!, labels[i]!, budget, options);
    scanTimes[i] = `waited ${(t1 - t0).toFixed(0)} ms, scan ${(performance.now() - t1).toFixed(0)} ms`;
  };
  const reports: LayerReport[] = [];
  let pending: Promise<void> | undefined = layers.length > 0 ? scan(0) : undefined;
  try {
    for (let i = 0; i < layers.length; i++) {
      await pending;
      pending = i + 1 < layers.length ? scan(i + 1) : undefined;
      pending?.catch(() => undefined);
      const t0 = performance.now();
      const report = await builder.applyLayer(layers[i]!, labels[i]!, options);
      reports.push(report);
      trace?.(`${labels[i]}: ${scanTimes[i]}, apply ${(performance.now() - t0).toFixed(0)} ms, ${report.entries} entries, ${report.compression}`);
    }
  } finally {
    // never leave a scan reading a blob behind a failed apply
    await pending?.catch(() => undefined);
  }
  return reports;
}
