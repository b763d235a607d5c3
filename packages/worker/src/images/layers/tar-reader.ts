import type { TarHeaderLike } from "./policy.js";

/** What a tar reader reports, synchronously and in archive order. */
export interface TarVisitor {
  /** One entry's header, with GNU long names and PAX records applied (as tar-stream did). */
  entry(header: TarHeaderLike): void;
  /** Body bytes of the current entry: a view of the reader's input, valid only during the call. */
  data(chunk: Uint8Array): void;
  /** The current entry's body is complete. */
  end(): void;
}

const BLOCK = 512;
/** PAX and GNU long-name records are metadata: a few KiB in practice; anything near this is an attack. */
const MAX_META_BYTES = 1 << 20;
/**
 * Zeros allowed after the end-of-archive block. Real writers end with a second zero block and pad to their record
 * size (GNU tar: 10 KiB; `-b 2048`, the largest common blocking factor: 1 MiB). Anything longer, or anything not
 * zero, is refused: the bytes after the end are never parsed yet still decompressed and spilled to disk, which made
 * "a tiny tar followed by gigabytes of zeros" a decompression bomb no entry limit saw.
 */
export const MAX_TRAILING_ZERO_BYTES = 1 << 20;

/** A tar-level limit was exceeded: a refusal of the layer (LayerRejected), not a corrupt archive. */
export class TarLimitError extends Error {}

const TYPES: Record<number, string> = {
  0: "file",
  1: "link",
  2: "symlink",
  3: "character-device",
  4: "block-device",
  5: "directory",
  6: "fifo",
  7: "contiguous-file",
  72: "pax-header",
  55: "pax-global-header",
  27: "gnu-long-link-path",
  28: "gnu-long-path",
  30: "gnu-long-path",
};

const decoder = new TextDecoder();

function text(block: Uint8Array, offset: number, length: number): string {
  let end = offset;
  const limit = offset + length;
  while (end < limit && block[end] !== 0) end++;
  return decoder.decode(block.subarray(offset, end));
}

/** An octal field (leading spaces/NULs allowed), or a base-256 one (first byte 0x80 or 0xff), as GNU tar writes. */
function octal(block: Uint8Array, offset: number, length: number): number {
  const first = block[offset]!;
  if (first & 0x80) {
    if (first !== 0x80 && first !== 0xff) return Number.NaN;
    const positive = first === 0x80;
    let sum = 0;
    for (let i = offset + 1; i < offset + length; i++) sum = sum * 256 + (positive ? block[i]! : 0xff - block[i]!);
    return positive ? sum : -sum;
  }
  let i = offset;
  const end = offset + length;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) return Number.NaN;
    value = value * 8 + (c - 0x30);
    digits++;
  }
  return digits === 0 ? 0 : value;
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function checksum(block: Uint8Array): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += block[i]!;
  for (let i = 156; i < BLOCK; i++) sum += block[i]!;
  return sum;
}

function decodePax(bytes: Uint8Array): Record<string, string> {
  const result: Record<string, string> = {};
  let offset = 0;
  while (offset < bytes.length) {
    let space = offset;
    while (space < bytes.length && bytes[space] !== 0x20) space++;
    const length = Number.parseInt(decoder.decode(bytes.subarray(offset, space)), 10);
    if (!length || offset + length > bytes.length) return result;
    const record = decoder.decode(bytes.subarray(space + 1, offset + length - 1));
    const eq = record.indexOf("=");
    if (eq === -1) return result;
    result[record.slice(0, eq)] = record.slice(eq + 1);
    offset += length;
  }
  return result;
}

/**
 * A streaming tar parser (ustar, GNU and PAX, the formats image layers use) that copies nothing but headers:
 * `push` takes any slice of the archive (usually a decompressor's reused output buffer) and reports headers and
 * body bytes synchronously, as views of that slice. It replaced tar-stream, whose per-block buffers and per-entry
 * streams were most of an unpack's garbage. Headers read like tar-stream's (same field rules, same type names);
 * a bad checksum or an unknown format is an error. Reading stops at the first zero block (end of archive, as Go's
 * archive/tar and GNU tar read it); what follows may only be zeros, at most MAX_TRAILING_ZERO_BYTES of them
 * (a TarLimitError past that; an Error for anything not zero).
 */
export class TarReader {
  private readonly header = new Uint8Array(BLOCK);
  private headerFill = 0;
  /** Body bytes of the current entry still to come, then padding to the next block. */
  private remaining = 0;
  private padding = 0;
  private inBody = false;
  /** The body of a PAX or GNU long-name record being collected. */
  private meta: Uint8Array | undefined;
  private metaFill = 0;
  private metaType = "";
  private pax: Record<string, string> | undefined;
  private paxGlobal: Record<string, string> | undefined;
  private longPath: string | undefined;
  private longLink: string | undefined;
  private ended = false;
  /** Bytes seen after the end-of-archive block. */
  private trailing = 0;

  constructor(private readonly visitor: TarVisitor) {}

  /** Whether the end-of-archive marker was seen. */
  get finished(): boolean {
    return this.ended;
  }

  push(chunk: Uint8Array): void {
    let offset = 0;
    const length = chunk.length;
    while (offset < length && !this.ended) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, length - offset);
        const view = chunk.subarray(offset, offset + n);
        if (this.meta) {
          this.meta.set(view, this.metaFill);
          this.metaFill += n;
        } else {
          this.visitor.data(view);
        }
        this.remaining -= n;
        offset += n;
        if (this.remaining === 0) this.bodyDone();
        continue;
      }
      if (this.padding > 0) {
        const n = Math.min(this.padding, length - offset);
        this.padding -= n;
        offset += n;
        continue;
      }
      // a header block, possibly split across pushes
      if (this.headerFill === 0 && length - offset >= BLOCK) {
        this.header.set(chunk.subarray(offset, offset + BLOCK));
        offset += BLOCK;
      } else {
        const n = Math.min(BLOCK - this.headerFill, length - offset);
        this.header.set(chunk.subarray(offset, offset + n), this.headerFill);
        this.headerFill += n;
        offset += n;
        if (this.headerFill < BLOCK) return;
      }
      this.headerFill = 0;
      this.onHeader();
    }
    if (offset < length) this.trailer(chunk.subarray(offset));
  }

  private trailer(bytes: Uint8Array): void {
    this.trailing += bytes.length;
    if (this.trailing > MAX_TRAILING_ZERO_BYTES) {
      throw new TarLimitError(`more than ${MAX_TRAILING_ZERO_BYTES} bytes after the end of the tar archive`);
    }
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) throw new Error("data after the end of the tar archive");
  }

  /** The archive ended: an entry cut short, or no end-of-archive marker after a started entry, is an error. */
  finish(): void {
    if (this.ended) return;
    if (this.remaining > 0 || this.headerFill > 0 || this.meta) throw new Error("unexpected end of the tar archive");
    // Archives without the two zero blocks exist (tar-stream accepted them too).
    this.ended = true;
  }

  private bodyDone(): void {
    if (this.meta) {
      const bytes = this.meta.subarray(0, this.metaFill);
      switch (this.metaType) {
        case "gnu-long-path":
          this.longPath = text(bytes, 0, bytes.length);
          break;
        case "gnu-long-link-path":
          this.longLink = text(bytes, 0, bytes.length);
          break;
        case "pax-global-header":
          this.paxGlobal = decodePax(bytes);
          break;
        default:
          this.pax = { ...this.paxGlobal, ...decodePax(bytes) };
      }
      this.meta = undefined;
      return;
    }
    if (this.inBody) {
      this.inBody = false;
      this.visitor.end();
    }
  }

  private onHeader(): void {
    const block = this.header;
    const sum = checksum(block);
    if (sum === 8 * 0x20 && isZeroBlock(block)) {
      // end of archive (one zero block is enough, as for tar-stream); what follows may only be zero padding
      this.ended = true;
      return;
    }
    if (sum !== octal(block, 148, 8)) throw new Error("invalid tar header checksum (a corrupt layer, or not a tar)");
    const ustar = block[257] === 0x75 && block[258] === 0x73 && block[259] === 0x74 && block[260] === 0x61 && block[261] === 0x72;
    const isUstar = ustar && block[262] === 0 && block[263] === 0x30 && block[264] === 0x30;
    const isGnu = ustar && block[262] === 0x20 && block[263] === 0x20 && block[264] === 0;
    if (!isUstar && !isGnu) throw new Error("invalid tar header: unknown format");
    let flag = block[156] === 0 ? 0 : block[156]! - 0x30;
    let name = text(block, 0, 100);
    if (isUstar && block[345] !== 0) name = `${text(block, 345, 155)}/${name}`;
    if (flag === 0 && name.endsWith("/")) flag = 5;
    const type = TYPES[flag] ?? null;
    let size = octal(block, 124, 12);
    if (!(size >= 0)) throw new Error("invalid tar header: bad size field");
    if (type === "pax-header" || type === "pax-global-header" || type === "gnu-long-path" || type === "gnu-long-link-path") {
      if (size > MAX_META_BYTES) throw new TarLimitError("tar metadata record exceeds 1 MiB");
      this.meta = new Uint8Array(size);
      this.metaFill = 0;
      this.metaType = type;
      this.setBody(size);
      if (size === 0) this.bodyDone();
      return;
    }
    const header: TarHeaderLike = {
      name,
      type,
      mode: octal(block, 100, 8),
      uid: octal(block, 108, 8),
      gid: octal(block, 116, 8),
      size,
      mtime: new Date(octal(block, 136, 12) * 1000),
      linkname: block[157] === 0 ? null : text(block, 157, 100),
      pax: null,
    };
    if (this.longPath !== undefined) header.name = this.longPath;
    if (this.longLink !== undefined) header.linkname = this.longLink;
    this.longPath = undefined;
    this.longLink = undefined;
    // tar-stream's rule: global records apply through the next per-entry record, never on their own
    const pax = this.pax;
    this.pax = undefined;
    if (pax) {
      if (pax.path) header.name = pax.path;
      if (pax.linkpath) header.linkname = pax.linkpath;
      if (pax.size) {
        size = Number.parseInt(pax.size, 10);
        if (!(size >= 0)) throw new Error("invalid tar header: bad PAX size");
        header.size = size;
      }
      header.pax = pax;
    }
    // Only regular files carry a body their size counts; a directory's size field is ignored, as tar does.
    const bodySize = type === "directory" ? 0 : size;
    this.visitor.entry(header);
    this.inBody = true;
    this.setBody(bodySize);
    if (bodySize === 0) this.bodyDone();
  }

  private setBody(size: number): void {
    this.remaining = size;
    this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
  }
}
