import { describe, expect, it } from "vitest";
import { KERNEL_FILE_OFFSET, XEN_ELFNOTE_PHYS32_ENTRY, buildPvhElfHeader, findXenPhys32Entry, parsePvhElfHeader, scanImageForPhys32Entry } from "./pvh-elf.js";

describe("buildPvhElfHeader", () => {
  const header = buildPvhElfHeader({ loadAddr: 0x1000000n, pvhEntry: 0x1000000n, kernelSize: 21_561_344 });
  const view = new DataView(header.buffer);

  it("is an x86-64 ELF64 executable with two program headers and the kernel page aligned after it", () => {
    expect(header.byteLength).toBe(KERNEL_FILE_OFFSET);
    expect([...header.subarray(0, 7)]).toEqual([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
    expect(view.getUint16(16, true)).toBe(2); // ET_EXEC
    expect(view.getUint16(18, true)).toBe(62); // EM_X86_64
    expect(view.getUint16(56, true)).toBe(2);
  });

  it("places one PT_LOAD at paddr = vaddr = load address and a Xen PHYS32_ENTRY note", () => {
    const parsed = parsePvhElfHeader(header);
    expect(parsed.load).toEqual({ offset: BigInt(KERNEL_FILE_OFFSET), paddr: 0x1000000n, vaddr: 0x1000000n, fileSize: 21_561_344n, memSize: 21_561_344n });
    expect(parsed.phys32Entry).toBe(0x1000000n);
    expect(parsed.entry).toBe(0x1000000n);
  });

  it("pads the 4-byte note value with zeros so an 8-byte read (QEMU 7.2) sees the same address", () => {
    const phoff = 64;
    const noteOffset = Number(view.getBigUint64(phoff + 8, true));
    expect(view.getUint32(noteOffset + 8, true)).toBe(XEN_ELFNOTE_PHYS32_ENTRY);
    expect(view.getBigUint64(noteOffset + 16, true)).toBe(0x1000000n);
  });

  it("rejects an entry beyond 32 bits and an unaligned load address", () => {
    expect(() => buildPvhElfHeader({ loadAddr: 0x1000000n, pvhEntry: 0x1_0000_0000n, kernelSize: 1 })).toThrow(/32 bits/);
    expect(() => buildPvhElfHeader({ loadAddr: 0x1000010n, pvhEntry: 0x1000000n, kernelSize: 1 })).toThrow(/page aligned/);
  });
});

describe("Xen note scanning", () => {
  function note(type: number, desc: number[], name = [0x58, 0x65, 0x6e, 0]): number[] {
    const head = new Uint8Array(12);
    const v = new DataView(head.buffer);
    v.setUint32(0, name.length, true);
    v.setUint32(4, desc.length, true);
    v.setUint32(8, type, true);
    return [...head, ...name, ...desc];
  }

  it("finds PHYS32_ENTRY after other notes, with 4- and 8-byte values", () => {
    const linuxNote = note(6, [1, 2, 3, 4], [0x4c, 0x69, 0x6e, 0x75, 0x78, 0, 0, 0]);
    expect(findXenPhys32Entry(Uint8Array.from([...linuxNote, ...note(18, [0x23, 0x01, 0x00, 0x01])]))).toBe(0x1000123n);
    expect(findXenPhys32Entry(Uint8Array.from(note(18, [0, 0, 0, 1, 0, 0, 0, 0])))).toBe(0x1000000n);
    expect(findXenPhys32Entry(Uint8Array.from(note(19, [0, 0, 0, 1])))).toBeUndefined();
  });

  it("finds the note inside a flat image and ignores a stray 'Xen' string", () => {
    const image = new Uint8Array(4096);
    image.set([0x58, 0x65, 0x6e, 0], 100); // no header in front
    image.set(note(18, [0, 0, 0, 2, 0, 0, 0, 0]), 2000);
    expect(scanImageForPhys32Entry(image)).toBe(0x2000000n);
    expect(scanImageForPhys32Entry(new Uint8Array(64))).toBeUndefined();
  });
});
