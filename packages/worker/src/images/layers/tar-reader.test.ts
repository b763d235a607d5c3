import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { extract, pack } from "tar-stream";
import { describe, expect, it } from "vitest";
import type { TarHeaderLike } from "./policy.js";
import { MAX_TRAILING_ZERO_BYTES, TarLimitError, TarReader } from "./tar-reader.js";

interface Seen {
  name: string;
  type: string | null | undefined;
  size: number | undefined;
  mode: number | undefined;
  uid: number | undefined;
  linkname: string | null | undefined;
  mtime: number | undefined;
  pax: Record<string, string> | null | undefined;
  body: string;
}

function normalise(header: TarHeaderLike, body: string): Seen {
  return { name: header.name, type: header.type, size: header.size, mode: header.mode, uid: header.uid, linkname: header.linkname ?? null, mtime: header.mtime?.getTime(), pax: header.pax ?? null, body };
}

/** Reads `tar` with TarReader, fed in pieces of `step` bytes. */
function readAll(tar: Uint8Array, step: number): Seen[] {
  const seen: Seen[] = [];
  let current: { header: TarHeaderLike; body: Buffer[] } | undefined;
  const reader = new TarReader({
    entry: (header) => (current = { header, body: [] }),
    data: (chunk) => current!.body.push(Buffer.from(chunk)),
    end: () => seen.push(normalise(current!.header, Buffer.concat(current!.body).toString("latin1"))),
  });
  for (let i = 0; i < tar.length; i += step) reader.push(tar.subarray(i, i + step));
  reader.finish();
  return seen;
}

/** The same archive through tar-stream, the parser TarReader replaced. */
async function readWithTarStream(tar: Uint8Array): Promise<Seen[]> {
  const seen: Seen[] = [];
  const extractor = extract();
  Readable.from([Buffer.from(tar)]).pipe(extractor);
  for await (const entry of extractor) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    seen.push(normalise(entry.header as unknown as TarHeaderLike, Buffer.concat(chunks).toString("latin1")));
  }
  return seen;
}

async function packed(): Promise<Buffer> {
  const p = pack();
  const mtime = new Date(1_700_000_000_000);
  p.entry({ name: "etc/", type: "directory", mode: 0o755, mtime });
  p.entry({ name: "etc/empty", mode: 0o644, mtime }, "");
  p.entry({ name: "etc/block", mode: 0o4755, uid: 1000, gid: 1000, mtime }, "x".repeat(512));
  p.entry({ name: "etc/odd", mode: 0o600, mtime }, "y".repeat(1234));
  p.entry({ name: `deep/${"n".repeat(150)}`, mode: 0o644, mtime }, "long name through PAX");
  p.entry({ name: "link", type: "symlink", linkname: `target/${"t".repeat(120)}`, mtime });
  p.entry({ name: "hard", type: "link", linkname: "etc/odd", mtime });
  p.entry({ name: "uid", mode: 0o644, mtime, pax: { uid: "3000000", "SCHILY.xattr.user.x": "v" } }, "pax uid");
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of p) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe("TarReader", () => {
  it("reads what tar-stream reads (PAX names, links, PAX records, odd sizes), however the bytes are split", async () => {
    const tar = await packed();
    const expected = await readWithTarStream(tar);
    expect(expected.map((e) => e.name)).toContain(`deep/${"n".repeat(150)}`);
    for (const step of [1, 7, 511, 512, 513, 4096, tar.length]) expect(readAll(tar, step)).toEqual(expected);
  });

  it("reads GNU tar's own format: long names and link names as ././@LongLink records, base-256 ids", () => {
    const dir = mkdtempSync(join(tmpdir(), "iii-tar-reader-"));
    try {
      const name = `${"d".repeat(60)}/${"f".repeat(120)}`;
      mkdirSync(join(dir, "src", "d".repeat(60)), { recursive: true });
      writeFileSync(join(dir, "src", name), "gnu body");
      const tar = execFileSync("tar", ["--format=gnu", "--owner=2097152", "--group=0", "--numeric-owner", "-C", join(dir, "src"), "-cf", "-", "."]);
      const seen = readAll(tar, 300);
      const file = seen.find((e) => e.name.endsWith("f".repeat(120)));
      expect(file).toMatchObject({ type: "file", body: "gnu body", uid: 2097152 });
      expect(file!.name).toBe(`./${name}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a header whose checksum does not match, and an archive cut inside an entry", async () => {
    const tar = await packed();
    const corrupt = Buffer.from(tar);
    corrupt[0] = corrupt[0]! ^ 0x01;
    expect(() => readAll(corrupt, 4096)).toThrow(/checksum/);
    expect(() => readAll(tar.subarray(0, 512 + 100), 4096)).toThrow(/unexpected end of the tar archive/);
    expect(() => readAll(Buffer.alloc(512, 0x41), 512)).toThrow(/checksum/);
  });

  it("stops at the end-of-archive block: after it, at most 1 MiB of zero padding, and nothing else", async () => {
    const tar = await packed();
    const endBlock = tar.length - 1024 + 512;
    // GNU tar's 10 KiB record and `-b 2048`'s 1 MiB one: zeros only, not parsed
    const padded = Buffer.concat([tar.subarray(0, endBlock), Buffer.alloc(MAX_TRAILING_ZERO_BYTES)]);
    for (const step of [1000, 65536]) expect(readAll(padded, step)).toEqual(readAll(tar, 1000));
    const tooLong = Buffer.concat([padded, Buffer.alloc(1)]);
    expect(() => readAll(tooLong, 65536)).toThrow(TarLimitError);
    expect(() => readAll(tooLong, 65536)).toThrow(`more than ${MAX_TRAILING_ZERO_BYTES} bytes after the end of the tar archive`);
    expect(() => readAll(Buffer.concat([tar, Buffer.alloc(2048, 0x41)]), 1000)).toThrow(/^data after the end of the tar archive$/);
    expect(() => readAll(Buffer.concat([tar.subarray(0, endBlock), tar.subarray(0, 512)]), 4096)).toThrow(/^data after the end of the tar archive$/);
  });
});
