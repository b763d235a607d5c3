import { IiiError } from "../../errors.js";
import { MAX_TRAILING_ZERO_BYTES } from "./tar-reader.js";

/**
 * What a layer may do to the host. The defaults bound a hostile image to 10 GiB of disk and one million inodes
 * per layer, which is far above any real image and far below what hurts a developer machine.
 */
export interface LayerLimits {
  /**
   * Sum of entry bodies (regular files, and whatever body any other entry declares) over all layers of one image.
   * It also bounds the uncompressed tars themselves, which the scan spills to disk: see LayerBudget.archive.
   */
  maxTotalBytes: number;
  maxFileBytes: number;
  /** Tar entries per layer (headers, whiteouts included). */
  maxEntries: number;
  /**
   * Tar entries over all layers of one image. Per layer alone the count was unbounded by the number of layers (a
   * manifest may list thousands): 17 layers of a million empty files each use up the 16.7M inodes of a 256 GiB
   * ext4 disk (review rev6h). One per 8 KiB of maxTotalBytes, the bound a VM's --disk gives its guest.
   */
  maxImageEntries: number;
  /** Path components of one entry. */
  maxDepth: number;
}

export const DEFAULT_LAYER_LIMITS: LayerLimits = {
  maxTotalBytes: 10 * 1024 ** 3,
  maxFileBytes: 5 * 1024 ** 3,
  maxEntries: 1_000_000,
  maxImageEntries: 1_310_720,
  maxDepth: 128,
};

/**
 * The body a non-file entry may carry. Symlinks, hardlinks, devices, FIFOs and whiteouts have none in any real
 * layer (their size field is 0); a body there is never written anywhere, only decompressed and spilled, so a large
 * one is refused outright and a small one counts against maxTotalBytes like file data.
 */
export const MAX_NON_FILE_BODY_BYTES = 64 * 1024;

/**
 * Uncompressed tar bytes allowed per entry beyond its body: its 512-byte header, padding to the next block, and a
 * typical PAX or GNU long-name record (another header and a short body). Metadata records are not entries, so a
 * stream of them is bounded only by this allowance.
 */
export const TAR_BYTES_PER_ENTRY = 2048;

/** Uncompressed tar bytes allowed per layer beyond its entries: the end-of-archive blocks and record padding. */
export const TAR_BYTES_PER_LAYER = MAX_TRAILING_ZERO_BYTES + 1024;

/** The subset of a tar-stream header the policy looks at. */
export interface TarHeaderLike {
  name: string;
  type?: string | null | undefined;
  mode?: number | undefined;
  uid?: number | undefined;
  gid?: number | undefined;
  size?: number | undefined;
  mtime?: Date | undefined;
  linkname?: string | null | undefined;
  pax?: Record<string, string> | null | undefined;
}

export type PlannedEntry =
  | (EntryBase & { kind: "file"; size: number })
  | (EntryBase & { kind: "directory" })
  | (EntryBase & { kind: "fifo" })
  | (EntryBase & { kind: "symlink"; target: string })
  | (EntryBase & { kind: "hardlink"; targetComponents: string[] })
  /** `.wh.<name>`: delete `<parent>/<name>` from lower layers. `components` is the deleted path. */
  | (EntryBase & { kind: "whiteout" })
  /** `.wh..wh..opq`: hide everything lower layers put in the directory `components`. */
  | (EntryBase & { kind: "opaque" })
  /** Device nodes and unknown-but-harmless records: not materialised (a guest gets its devices from the kernel). */
  | (EntryBase & { kind: "skip"; reason: string });

interface EntryBase {
  /** Normalised path components below the rootfs; [] is the rootfs itself. */
  components: string[];
  /** The entry name as it appeared in the tar, for error messages. */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: Date;
  /** Bytes of body the entry carries in the archive (a directory's size field is ignored, as tar does). */
  bodyBytes: number;
}

export interface PolicyOptions {
  limits: LayerLimits;
  /** Keep setuid/setgid bits (off by default: a workload should not gain privileges from its image). */
  keepSetuid: boolean;
  /** "layer 2/3 (sha256:…)", prefixed to every error. */
  label: string;
}

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
const SETID_BITS = 0o6000;

export function layerRejected(label: string, name: string, why: string): IiiError {
  return new IiiError("LayerRejected", `${label}: entry ${JSON.stringify(truncate(name))} rejected: ${why}`);
}

function truncate(name: string): string {
  return name.length > 200 ? `${name.slice(0, 100)}…(${name.length} chars)…${name.slice(-60)}` : name;
}

/**
 * Splits a tar path into clean components. Absolute paths and `..` are refused outright rather than
 * normalised: a well-formed layer never has them, so their presence is a sign of an attack, not a quirk.
 */
export function splitEntryPath(name: string, label: string, maxDepth: number): string[] {
  if (name.startsWith("/")) throw layerRejected(label, name, "absolute path");
  const components: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw layerRejected(label, name, "path traversal (..)");
    components.push(part);
    if (components.length > maxDepth) {
      throw layerRejected(label, name, `path depth exceeds the limit of ${maxDepth} components`);
    }
  }
  return components;
}

function paxNumber(pax: Record<string, string> | null | undefined, key: string): number | undefined {
  const value = pax?.[key];
  if (value === undefined || !/^\d+(\.\d+)?$/.test(value)) return undefined;
  return Number(value);
}

/** Turns one tar header into what to do, or throws LayerRejected. Pure: no I/O. */
export function planEntry(header: TarHeaderLike, options: PolicyOptions): PlannedEntry {
  const { label, limits } = options;
  const name = header.pax?.path ?? header.name;
  const components = splitEntryPath(name, label, limits.maxDepth);
  // tar-stream does not apply PAX uid/gid (needed for ids above 2^21); mtime may carry fractions.
  const uid = paxNumber(header.pax, "uid") ?? header.uid ?? 0;
  const gid = paxNumber(header.pax, "gid") ?? header.gid ?? 0;
  const mtimeSeconds = paxNumber(header.pax, "mtime");
  const mtime = mtimeSeconds !== undefined ? new Date(mtimeSeconds * 1000) : (header.mtime ?? new Date(0));
  let mode = (header.mode ?? 0o644) & 0o7777;
  if (!options.keepSetuid) mode &= ~SETID_BITS;
  const bodyBytes = header.type === "directory" ? 0 : (header.size ?? 0);
  const base = { components, name, mode, uid, gid, mtime, bodyBytes };

  const sparseSize = paxNumber(header.pax, "GNU.sparse.realsize") ?? paxNumber(header.pax, "GNU.sparse.size");
  if (sparseSize !== undefined || header.pax?.["GNU.sparse.major"] !== undefined) {
    if ((sparseSize ?? 0) > limits.maxFileBytes) {
      throw layerRejected(label, name, `sparse file of ${sparseSize} bytes exceeds the per-file limit of ${limits.maxFileBytes} bytes`);
    }
    throw layerRejected(label, name, "sparse files are not supported in image layers");
  }

  const regular = header.type === "file" || header.type === "contiguous-file";
  if (!regular && bodyBytes > MAX_NON_FILE_BODY_BYTES) {
    const kind = header.type === "link" ? "hardlink" : (header.type ?? "non-file");
    throw layerRejected(label, name, `a ${kind} entry with a body of ${bodyBytes} bytes (at most ${MAX_NON_FILE_BODY_BYTES} for anything but a regular file)`);
  }

  const last = components[components.length - 1];
  if (last !== undefined && last.startsWith(WHITEOUT_PREFIX)) {
    const parent = components.slice(0, -1);
    if (last === OPAQUE_MARKER) return { ...base, kind: "opaque", components: parent };
    if (last.startsWith(OPAQUE_MARKER.slice(0, 8))) {
      // Other `.wh..wh.` names are reserved (aufs hardlink dirs); they carry nothing for the rootfs.
      return { ...base, kind: "skip", reason: "reserved whiteout name" };
    }
    const hidden = last.slice(WHITEOUT_PREFIX.length);
    if (hidden === "" || hidden === "." || hidden === ".." || hidden.includes("/")) {
      throw layerRejected(label, name, "malformed whiteout");
    }
    return { ...base, kind: "whiteout", components: [...parent, hidden] };
  }

  switch (header.type) {
    case "file":
    case "contiguous-file": {
      const size = header.size ?? 0;
      if (size > limits.maxFileBytes) {
        throw layerRejected(label, name, `file of ${size} bytes exceeds the per-file limit of ${limits.maxFileBytes} bytes`);
      }
      if (components.length === 0) throw layerRejected(label, name, "a regular file cannot replace the rootfs");
      return { ...base, kind: "file", size };
    }
    case "directory":
      return { ...base, kind: "directory" };
    case "symlink": {
      const target = header.pax?.linkpath ?? header.linkname ?? "";
      if (target === "" || target.includes("\0")) throw layerRejected(label, name, "symlink with an empty target");
      if (components.length === 0) throw layerRejected(label, name, "a symlink cannot replace the rootfs");
      // The target is guest data: it is stored verbatim and only ever resolved inside the rootfs.
      return { ...base, kind: "symlink", target };
    }
    case "link": {
      const target = header.pax?.linkpath ?? header.linkname ?? "";
      if (target.startsWith("/")) throw layerRejected(label, name, `hardlink to ${JSON.stringify(target)} outside the layer (absolute target)`);
      if (target.split("/").includes("..")) throw layerRejected(label, name, `hardlink to ${JSON.stringify(target)} outside the layer (..)`);
      const targetComponents = splitEntryPath(target, label, limits.maxDepth);
      if (targetComponents.length === 0 || components.length === 0) throw layerRejected(label, name, "hardlink to or from the rootfs itself");
      return { ...base, kind: "hardlink", targetComponents };
    }
    case "fifo":
      if (components.length === 0) throw layerRejected(label, name, "a fifo cannot replace the rootfs");
      return { ...base, kind: "fifo" };
    case "character-device":
    case "block-device":
      return { ...base, kind: "skip", reason: "device node (not created: the guest kernel provides /dev)" };
    default:
      throw layerRejected(label, name, `unsupported tar entry type ${header.type === null ? "(unknown type flag)" : header.type}`);
  }
}

/** Counts entries per layer and bytes per image; shared by all layers of one image. */
export class LayerBudget {
  private totalBytes = 0;
  private entries = 0;
  private imageEntries = 0;
  private layers = 0;
  private archiveBytes = 0;

  constructor(private readonly limits: LayerLimits) {}

  startLayer(): void {
    this.entries = 0;
    this.layers += 1;
  }

  account(entry: PlannedEntry, label: string): void {
    this.entries += 1;
    this.imageEntries += 1;
    if (this.entries > this.limits.maxEntries) {
      throw layerRejected(label, entry.name, `the layer has more than ${this.limits.maxEntries} entries`);
    }
    if (this.imageEntries > this.limits.maxImageEntries) {
      throw layerRejected(label, entry.name, `the image has more than ${this.limits.maxImageEntries} entries over all its layers`);
    }
    if (entry.bodyBytes === 0) return;
    this.totalBytes += entry.bodyBytes;
    if (this.totalBytes > this.limits.maxTotalBytes) {
      throw layerRejected(label, entry.name, `the image exceeds the total size limit of ${this.limits.maxTotalBytes} bytes`);
    }
  }

  /**
   * Counts `bytes` of uncompressed tar, every byte the scan spills to disk, whatever the parser makes of it. The
   * bodies are bounded by maxTotalBytes as their headers arrive; this bounds the rest (headers, padding, metadata
   * records, the end of the archive) at TAR_BYTES_PER_ENTRY an entry and TAR_BYTES_PER_LAYER a layer, so the
   * spill of an image never exceeds maxTotalBytes plus that allowance, whatever the layer holds.
   */
  archive(bytes: number, label: string): void {
    this.archiveBytes += bytes;
    const allowed = this.limits.maxTotalBytes + this.imageEntries * TAR_BYTES_PER_ENTRY + this.layers * TAR_BYTES_PER_LAYER;
    if (this.archiveBytes > allowed) {
      throw new IiiError(
        "LayerRejected",
        `${label}: rejected: the uncompressed layers exceed the image's size limit of ${this.limits.maxTotalBytes} bytes (plus ${TAR_BYTES_PER_ENTRY} bytes of tar metadata per entry)`,
      );
    }
  }

  get bytes(): number {
    return this.totalBytes;
  }
}
