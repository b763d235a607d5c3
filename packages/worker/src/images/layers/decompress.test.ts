import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { pumpLayer, syncInflater } from "./decompress.js";

const dir = mkdtempSync(join(tmpdir(), "iii-decompress-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

async function pump(path: string): Promise<{ raw: Buffer; tar: Buffer; compression: string }> {
  const raw: Buffer[] = [];
  const tar: Buffer[] = [];
  const { compression } = await pumpLayer(path, (c) => raw.push(Buffer.from(c)), (c) => tar.push(Buffer.from(c)));
  return { raw: Buffer.concat(raw), tar: Buffer.concat(tar), compression };
}

describe("pumpLayer", () => {
  // half random, half repetitive: output steps both smaller and much larger than the input steps
  const payload = Buffer.concat([randomBytes(300_000), Buffer.alloc(3_000_000, "layer "), randomBytes(70_000)]);

  it("drives this Node's zlib and zstd handles synchronously (the reused-buffer path, not the stream fallback)", () => {
    for (const kind of ["gzip", "zstd"] as const) {
      const inflater = syncInflater(kind);
      expect(inflater, kind).toBeDefined();
      inflater!.close();
    }
  });

  it("gives the blob's bytes and the decompressed bytes, for gzip, zstd and plain tar", async () => {
    for (const [name, blob, compression] of [
      ["a.gz", gzipSync(payload), "gzip"],
      ["a.zst", zstdCompressSync(payload), "zstd"],
      ["a.tar", payload, "none"],
    ] as const) {
      const out = await pump(file(name, blob));
      expect(out.compression).toBe(compression);
      expect(out.raw.equals(blob)).toBe(true);
      expect(out.tar.equals(payload)).toBe(true);
    }
  });

  it("reads every member of a multi-member gzip, as gunzip does", async () => {
    const out = await pump(file("multi.gz", Buffer.concat([gzipSync(payload.subarray(0, 1000)), gzipSync(payload.subarray(1000))])));
    expect(out.tar.equals(payload)).toBe(true);
  });

  it("refuses a truncated or corrupt stream", async () => {
    const blob = gzipSync(payload);
    await expect(pump(file("cut.gz", blob.subarray(0, blob.length - 100)))).rejects.toThrow(/unexpected end of file/);
    const corrupt = Buffer.from(blob);
    corrupt.fill(0xff, 5000, 5100);
    await expect(pump(file("bad.gz", corrupt))).rejects.toThrow();
    const zst = zstdCompressSync(payload);
    await expect(pump(file("cut.zst", zst.subarray(0, zst.length - 100)))).rejects.toThrow();
  });
});
