import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { FrameDecoder } from "./frame-decoder.js";
import { FrameServer } from "./frame-server.js";
import { freeSimdSlabs } from "../wire/simd-memory.js";

test("frames committed in one turn arrive whole and in order across slab boundaries; no VM means a reported drop", async () => {
  const dir = mkdtempSync(join(tmpdir(), `iii-net-fs-${process.pid}-`));
  const logs: string[] = [];
  const server = new FrameServer(70_000, { onFrame: () => {}, onBurstEnd: () => {}, log: (l) => logs.push(l) });
  const path = join(dir, "vm.sock");
  try {
    await server.listen(path);
    // Before a VM connects: the buffer is scratch and the commit reports the drop.
    const scratch = server.reserve(60);
    expect(server.commit(scratch)).toBe(false);

    const got: Buffer[] = [];
    const dec = new FrameDecoder(70_000);
    const vm = net.connect(path);
    vm.on("data", (d: Buffer) => dec.push(d, (f) => got.push(Buffer.from(f))));
    await new Promise<void>((r) => vm.once("connect", () => r()));
    for (let i = 0; i < 100 && !server.connected; i++) await new Promise((r) => setTimeout(r, 10));

    // 3 MiB of frames of varying size (1 MiB slabs), all committed before the loop turns.
    const sizes: number[] = [];
    let total = 0;
    for (let i = 0; total < 3 * 1024 * 1024; i++) {
      const n = 60 + ((i * 7919) % 65_000);
      const f = server.reserve(n);
      f.fill(i & 0xff);
      f.writeUInt32BE(i, 0);
      expect(server.commit(f)).toBe(true);
      sizes.push(n);
      total += n + 4;
    }
    // The batch not yet handed to the socket counts as pending (the last slab alone is well over 512 KiB).
    expect(server.pendingWriteBytes).toBeGreaterThan(512 * 1024);
    for (let i = 0; i < 300 && got.length < sizes.length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(got.map((f) => f.length)).toEqual(sizes);
    got.forEach((f, i) => {
      expect(f.readUInt32BE(0)).toBe(i);
      expect(f[f.length - 1]).toBe(i & 0xff);
    });
    // A prebuilt frame goes the same way, after the others.
    expect(server.send(Buffer.from("prebuilt-frame"))).toBe(true);
    for (let i = 0; i < 100 && got.length === sizes.length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(got.at(-1)!.toString()).toBe("prebuilt-frame");
    vm.destroy();
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("slabs are reused once the socket has written them, and a slow reader still gets every frame intact", async () => {
  const dir = mkdtempSync(join(tmpdir(), `iii-net-fs-${process.pid}-`));
  const simdSlabsBefore = freeSimdSlabs();
  const server = new FrameServer(70_000, { onFrame: () => {}, onBurstEnd: () => {}, log: () => {} });
  const path = join(dir, "vm.sock");
  try {
    await server.listen(path);
    let bad = 0;
    let count = 0;
    const dec = new FrameDecoder(70_000);
    const vm = net.connect(path);
    vm.on("data", (d: Buffer) =>
      dec.push(d, (f) => {
        // Each frame is filled with its own index: a slab overwritten before the kernel took it shows up here.
        const want = count & 0xff;
        if (f.readUInt32BE(0) !== count || f[4] !== want || f[f.length - 1] !== want) bad++;
        count++;
      }),
    );
    await new Promise<void>((r) => vm.once("connect", () => r()));
    for (let i = 0; i < 100 && !server.connected; i++) await new Promise((r) => setTimeout(r, 10));
    // The reader starts paused, so the first slabs sit in the socket's queue while later ones fill.
    vm.pause();
    // 40 MiB of 32 KiB frames, half a slab per loop turn: far more than the pool holds.
    let sent = 0;
    for (let turn = 0; turn < 80; turn++) {
      if (turn === 8) vm.resume();
      for (let k = 0; k < 16; k++, sent++) {
        const f = server.reserve(32 * 1024);
        f.fill(sent & 0xff);
        f.writeUInt32BE(sent, 0);
        expect(server.commit(f)).toBe(true);
      }
      // Paced so the reader (this same process) keeps the queue under the transport's 32 MiB limit.
      await new Promise((r) => setTimeout(r, 5));
    }
    for (let i = 0; i < 500 && count < sent; i++) await new Promise((r) => setTimeout(r, 10));
    expect(count).toBe(sent);
    expect(bad).toBe(0);
    // 40 slabs' worth of frames went out of at most a pool's worth of fresh slabs plus the ones still held.
    expect(server.slabsAllocated).toBeLessThan(20);
    vm.destroy();
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // Its SIMD-memory slabs (where frames are checksummed in place) go back for other stacks.
  expect(simdSlabsBefore).toBeGreaterThan(0);
  for (let i = 0; i < 100 && freeSimdSlabs() < simdSlabsBefore; i++) await new Promise((r) => setTimeout(r, 10));
  expect(freeSimdSlabs()).toBe(simdSlabsBefore);
});
