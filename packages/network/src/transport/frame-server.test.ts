import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "vitest";
import { FrameDecoder } from "./frame-decoder.js";
import { FrameServer } from "./frame-server.js";

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
