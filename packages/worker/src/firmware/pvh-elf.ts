import { IiiError } from "../errors.js";

/**
 * Wraps a flat x86-64 kernel image (what libkrunfw hands out) into a minimal ELF64 that QEMU's PVH loader
 * boots: one PT_LOAD placing the bytes at their physical load address and one PT_NOTE carrying the Xen
 * `XEN_ELFNOTE_PHYS32_ENTRY` note. QEMU (hw/i386/x86.c, load_elfboot) refuses an uncompressed ELF without
 * that note and jumps to its value in 32-bit protected mode, as the PVH boot ABI says.
 *
 * Pure: header bytes in, header bytes out; the kernel bytes are appended by the caller so the 21 MB image
 * is never copied.
 */

export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

const ELF_HEADER_SIZE = 64;
const PROGRAM_HEADER_SIZE = 56;
const PT_LOAD = 1;
const PT_NOTE = 4;
const PF_X = 1;
const PF_W = 2;
const PF_R = 4;
const EM_X86_64 = 62;
const ET_EXEC = 2;
/** The kernel bytes start page-aligned in the file so that p_offset ≡ p_vaddr (mod p_align). */
export const KERNEL_FILE_OFFSET = 0x1000;

export interface PvhElfLayout {
  /** Physical (and virtual) address the image is loaded at. */
  loadAddr: bigint;
  /** 32-bit PVH entry point written into the Xen note. */
  pvhEntry: bigint;
  /** Size of the flat image in bytes. */
  kernelSize: number;
}

/** The bytes that precede the kernel image in the ELF file (exactly KERNEL_FILE_OFFSET long). */
export function buildPvhElfHeader(layout: PvhElfLayout): Uint8Array {
  if (layout.pvhEntry > 0xffff_ffffn) throw new RangeError(`PVH entry ${layout.pvhEntry.toString(16)} does not fit 32 bits`);
  if (layout.loadAddr % 0x1000n !== 0n) throw new RangeError(`load address 0x${layout.loadAddr.toString(16)} is not page aligned`);
  const out = new Uint8Array(KERNEL_FILE_OFFSET);
  const view = new DataView(out.buffer);
  const phoff = ELF_HEADER_SIZE;
  const noteOffset = phoff + 2 * PROGRAM_HEADER_SIZE;
  // Note: namesz(4) descsz(4) type(4) "Xen\0" desc(4), padded with 4 zero bytes. QEMU 7.2 reads the desc as
  // a size_t, so the zero padding makes an 8-byte read yield the same value as the 4-byte field.
  const noteSize = 12 + 4 + 4;

  // e_ident
  out.set([0x7f, 0x45, 0x4c, 0x46, 2 /* ELFCLASS64 */, 1 /* little endian */, 1 /* EV_CURRENT */, 0 /* SYSV */], 0);
  view.setUint16(16, ET_EXEC, true);
  view.setUint16(18, EM_X86_64, true);
  view.setUint32(20, 1, true);
  view.setBigUint64(24, layout.pvhEntry, true); // e_entry (informational; QEMU uses the note)
  view.setBigUint64(32, BigInt(phoff), true);
  view.setBigUint64(40, 0n, true); // no section headers
  view.setUint32(48, 0, true); // e_flags
  view.setUint16(52, ELF_HEADER_SIZE, true);
  view.setUint16(54, PROGRAM_HEADER_SIZE, true);
  view.setUint16(56, 2, true);
  view.setUint16(58, 0, true);
  view.setUint16(60, 0, true);
  view.setUint16(62, 0, true);

  // PT_NOTE first: QEMU scans program headers for the note before loading.
  writeProgramHeader(view, phoff, {
    type: PT_NOTE,
    flags: PF_R,
    offset: BigInt(noteOffset),
    addr: 0n,
    fileSize: BigInt(noteSize),
    memSize: BigInt(noteSize),
    align: 4n,
  });
  writeProgramHeader(view, phoff + PROGRAM_HEADER_SIZE, {
    type: PT_LOAD,
    flags: PF_R | PF_W | PF_X,
    offset: BigInt(KERNEL_FILE_OFFSET),
    addr: layout.loadAddr,
    fileSize: BigInt(layout.kernelSize),
    memSize: BigInt(layout.kernelSize),
    align: 0x1000n,
  });

  view.setUint32(noteOffset, 4, true); // namesz, including the NUL
  view.setUint32(noteOffset + 4, 4, true); // descsz
  view.setUint32(noteOffset + 8, XEN_ELFNOTE_PHYS32_ENTRY, true);
  out.set([0x58, 0x65, 0x6e, 0x00], noteOffset + 12); // "Xen\0"
  view.setUint32(noteOffset + 16, Number(layout.pvhEntry), true);
  return out;
}

interface ProgramHeader {
  type: number;
  flags: number;
  offset: bigint;
  addr: bigint;
  fileSize: bigint;
  memSize: bigint;
  align: bigint;
}

function writeProgramHeader(view: DataView, at: number, ph: ProgramHeader): void {
  view.setUint32(at, ph.type, true);
  view.setUint32(at + 4, ph.flags, true);
  view.setBigUint64(at + 8, ph.offset, true);
  view.setBigUint64(at + 16, ph.addr, true); // p_vaddr
  view.setBigUint64(at + 24, ph.addr, true); // p_paddr: QEMU's ELF loader places segments by p_paddr
  view.setBigUint64(at + 32, ph.fileSize, true);
  view.setBigUint64(at + 40, ph.memSize, true);
  view.setBigUint64(at + 48, ph.align, true);
}

export interface ParsedPvhElf {
  entry: bigint;
  load: { offset: bigint; paddr: bigint; vaddr: bigint; fileSize: bigint; memSize: bigint } | undefined;
  phys32Entry: bigint | undefined;
}

/** Reads back the fields QEMU uses; for tests and for validating a cached kernel. */
export function parsePvhElfHeader(bytes: Uint8Array): ParsedPvhElf {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, false) !== 0x7f454c46 || bytes[4] !== 2 || bytes[5] !== 1) throw new IiiError("FirmwareCorrupt", "not a little-endian ELF64 file");
  const phoff = Number(view.getBigUint64(32, true));
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  const result: ParsedPvhElf = { entry: view.getBigUint64(24, true), load: undefined, phys32Entry: undefined };
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = view.getUint32(at, true);
    const offset = view.getBigUint64(at + 8, true);
    if (type === PT_LOAD && !result.load) {
      result.load = {
        offset,
        vaddr: view.getBigUint64(at + 16, true),
        paddr: view.getBigUint64(at + 24, true),
        fileSize: view.getBigUint64(at + 32, true),
        memSize: view.getBigUint64(at + 40, true),
      };
    } else if (type === PT_NOTE) {
      const end = Number(offset + view.getBigUint64(at + 32, true));
      result.phys32Entry ??= findXenPhys32Entry(bytes.subarray(Number(offset), end));
    }
  }
  return result;
}

/**
 * Scans a buffer of ELF notes (4-byte aligned) for the Xen PHYS32_ENTRY note. Also used on the raw
 * libkrunfw image, which carries the kernel's own `.notes` section inside its loaded bytes.
 */
export function findXenPhys32Entry(notes: Uint8Array): bigint | undefined {
  const view = new DataView(notes.buffer, notes.byteOffset, notes.byteLength);
  let at = 0;
  while (at + 12 <= notes.byteLength) {
    const namesz = view.getUint32(at, true);
    const descsz = view.getUint32(at + 4, true);
    const type = view.getUint32(at + 8, true);
    const nameAt = at + 12;
    const descAt = nameAt + align4(namesz);
    if (descAt + descsz > notes.byteLength) return undefined;
    if (namesz === 4 && type === XEN_ELFNOTE_PHYS32_ENTRY && isXen(notes, nameAt)) {
      if (descsz === 4) return BigInt(view.getUint32(descAt, true));
      if (descsz === 8) return view.getBigUint64(descAt, true);
    }
    at = descAt + align4(descsz);
  }
  return undefined;
}

/**
 * Finds a Xen PHYS32_ENTRY note anywhere in a flat kernel image by its "Xen\0" owner, checking the header
 * in front of it. Returns undefined when the image has no such note.
 */
export function scanImageForPhys32Entry(image: Uint8Array): bigint | undefined {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  for (let i = 12; i + 8 <= image.byteLength; i += 4) {
    if (!isXen(image, i)) continue;
    if (view.getUint32(i - 12, true) !== 4 || view.getUint32(i - 4, true) !== XEN_ELFNOTE_PHYS32_ENTRY) continue;
    const descsz = view.getUint32(i - 8, true);
    if (descsz === 4) return BigInt(view.getUint32(i + 4, true));
    if (descsz === 8 && i + 12 <= image.byteLength) return view.getBigUint64(i + 4, true);
  }
  return undefined;
}

function isXen(bytes: Uint8Array, at: number): boolean {
  return bytes[at] === 0x58 && bytes[at + 1] === 0x65 && bytes[at + 2] === 0x6e && bytes[at + 3] === 0;
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
