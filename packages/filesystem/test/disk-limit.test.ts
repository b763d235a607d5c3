// The writable layer's disk limit (MountOptions.upperLimitBytes), tried the way a hostile guest would: fill it,
// grow a file with holes, preallocate, keep a deleted file open, make many empty files, copy up a big image
// file, append. Each must stop at the limit with ENOSPC, leave upper within it, and lose nothing written before.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FilesystemError, mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, shOk, tempDir } from "./helpers.js";

const MiB = 1024 * 1024;
const LIMIT = 4 * MiB;
/** What upper may hold past the limit: directory blocks and the like the count charges at 1 KiB an entry. */
const SLACK = 256 * 1024;

/** Host bytes under `dir` as the disk limit counts them: each entry's size or blocks, whichever is more. */
function upperBytes(dir: string): number {
  const out = execFileSync("find", [dir, "-printf", "%s %b\\n"], { encoding: "utf8" });
  let sum = 0;
  for (const line of out.trim().split("\n")) {
    const [size, blocks] = line.split(" ").map(Number) as [number, number];
    sum += Math.max(size, blocks * 512);
  }
  return sum;
}

describe.skipIf(!fuse.ok)("disk limit of the writable layer", () => {
  let base: string;
  let lower: string;
  let upper: string;
  let mnt: string;
  let handle: MountHandle | undefined;

  beforeEach(async () => {
    base = tempDir("quota");
    lower = path.join(base, "lower");
    upper = path.join(base, "upper");
    mnt = path.join(base, "mnt");
    for (const d of [lower, upper, mnt]) fs.mkdirSync(d);
    fs.writeFileSync(path.join(lower, "image-big"), Buffer.alloc(6 * MiB, 1));
    fs.writeFileSync(path.join(lower, "image-small"), "small\n");
    handle = await mountPassthrough({ layers: { lower, upper }, mountpoint: mnt, upperLimitBytes: LIMIT, isolation: "process" });
  });

  afterEach(async () => {
    await handle?.unmount();
    handle = undefined;
    rmrf(base);
  });

  it("stops a file that fills the disk at the limit, keeps what was written, and gives space back after rm", async () => {
    await shOk("printf kept > kept", mnt);
    const fill = await sh("dd if=/dev/zero of=big bs=64k count=128", mnt);
    expect(fill.code).not.toBe(0);
    expect(fill.stderr).toContain("No space left on device");
    expect(upperBytes(upper)).toBeLessThanOrEqual(LIMIT + SLACK);
    expect(fs.readFileSync(path.join(mnt, "kept"), "utf8")).toBe("kept");
    await shOk("rm big && dd if=/dev/zero of=again bs=64k count=32 status=none", mnt);
    expect(fs.statSync(path.join(mnt, "again")).size).toBe(2 * MiB);
  });

  it("counts a deleted file that is still open until it is closed", async () => {
    const r = await sh(
      "exec 3>held; dd if=/dev/zero bs=64k count=40 status=none >&3; rm held; " +
        "dd if=/dev/zero of=second bs=64k count=40 status=none; echo second=$?; exec 3>&-; " +
        "rm -f second; dd if=/dev/zero of=third bs=64k count=40 status=none; echo third=$?",
      mnt,
    );
    expect(r.stdout).toMatch(/second=[1-9]/);
    expect(r.stdout).toContain("third=0");
  });

  it("refuses a sparse file, a preallocation and appends beyond the limit", async () => {
    const sparse = await sh("truncate -s 1T sparse", mnt);
    expect(sparse.stderr).toContain("No space left on device");
    const falloc = await sh("touch pre && fallocate -l 8M pre", mnt);
    expect(falloc.code).not.toBe(0);
    expect(falloc.stderr).toMatch(/No space left on device/);
    const append = await sh("head -c 1048576 /dev/zero > mb; for i in 1 2 3 4 5 6; do cat mb >> log || exit 7; done", mnt);
    expect(append.code).toBe(7);
    expect(upperBytes(upper)).toBeLessThanOrEqual(LIMIT + SLACK);
  });

  it("charges every new entry, so empty files cannot exhaust the host either", async () => {
    const r = await sh("for i in $(seq 1 6000); do : > f$i || { echo stopped=$i; exit 0; }; done; echo all", mnt);
    expect(r.stdout).toMatch(/stopped=\d+/);
    expect(Number(/stopped=(\d+)/.exec(r.stdout)?.[1])).toBeLessThan(4200);
  });

  it("charges a new directory its block, so empty directories stay within the limit (review s15: 4x it before)", async () => {
    const r = await sh("for i in $(seq 1 6000); do mkdir d$i || { echo stopped=$i; exit 0; }; done; echo all", mnt);
    expect(r.stdout).toMatch(/stopped=\d+/);
    expect(r.stderr).toContain("No space left on device");
    expect(upperBytes(upper)).toBeLessThanOrEqual(LIMIT + SLACK);
  });

  it("charges a copy-up of an image file before copying it, and the image stays untouched", async () => {
    const r = await sh("echo more >> image-big", mnt);
    expect(r.stderr).toContain("No space left on device");
    expect(fs.statSync(path.join(lower, "image-big")).size).toBe(6 * MiB);
    expect(fs.readdirSync(upper).filter((n) => !n.startsWith(".wh."))).toEqual([]);
    await shOk("echo more >> image-small", mnt);
    expect(fs.readFileSync(path.join(mnt, "image-small"), "utf8")).toBe("small\nmore\n");
  });

  it("keeps the limit after a write or preallocation at an offset near 2^63 (a wrapped sum turned it off)", async () => {
    const far = await sh("fallocate -n -o 1 -l 9223372036854775806 far; dd if=/dev/zero of=far2 bs=1 count=1 seek=9223372036854775806 status=none; echo tried", mnt);
    expect(far.stdout).toContain("tried");
    const fill = await sh("dd if=/dev/zero of=big bs=64k count=128", mnt);
    expect(fill.stderr).toContain("No space left on device");
    expect(upperBytes(upper)).toBeLessThanOrEqual(LIMIT + SLACK);
  });

  it("shows the limit as the file system's size", async () => {
    const out = await shOk("df -B1 --output=size,avail .", mnt);
    const [size, avail] = out.trim().split("\n")[1]!.trim().split(/\s+/).map(Number) as [number, number];
    expect(size).toBeGreaterThan(LIMIT - 8192);
    expect(size).toBeLessThanOrEqual(LIMIT);
    expect(avail).toBeLessThanOrEqual(size);
  });
});

describe.skipIf(!fuse.ok)("entry limit of the writable layer", () => {
  it("stops empty files at one entry per 8 KiB of the limit, well before the bytes run out, and df shows it", async () => {
    const base = tempDir("quota-entries");
    const [lower, upper, mnt] = ["lower", "upper", "mnt"].map((d) => path.join(base, d)) as [string, string, string];
    for (const d of [lower, upper, mnt]) fs.mkdirSync(d);
    // 64 MiB: 65,536 entries' worth of bytes, but 8,192 entries.
    const handle = await mountPassthrough({ layers: { lower, upper }, mountpoint: mnt, upperLimitBytes: 64 * MiB, isolation: "process" });
    try {
      const r = await sh("for i in $(seq 1 12000); do : > f$i || { echo stopped=$i; exit 0; }; done; echo all", mnt, 120_000);
      const stopped = Number(/stopped=(\d+)/.exec(r.stdout)?.[1]);
      expect(stopped).toBeGreaterThan(8000);
      expect(stopped).toBeLessThanOrEqual(8193);
      const df = await shOk("df --output=itotal,iavail .", mnt);
      const [itotal, iavail] = df.trim().split("\n")[1]!.trim().split(/\s+/).map(Number) as [number, number];
      expect(itotal).toBe(8192);
      expect(iavail).toBe(0);
    } finally {
      await handle.unmount();
      rmrf(base);
    }
  }, 180_000);
});

describe.skipIf(!fuse.ok)("disk limit options", () => {
  it("fails closed where it cannot be kept, and names a bad value", async () => {
    const base = tempDir("quota-opts");
    const [lower, upper, mnt] = ["lower", "upper", "mnt"].map((d) => path.join(base, d)) as [string, string, string];
    for (const d of [lower, upper, mnt]) fs.mkdirSync(d);
    try {
      // In this process no shim is preloaded: the limit cannot be kept, so there is no mount.
      await expect(mountPassthrough({ layers: { lower, upper }, mountpoint: mnt, upperLimitBytes: MiB, isolation: "in-process" })).rejects.toMatchObject({
        code: "DiskLimitUnsupported",
      });
      for (const bad of [0, -1, 1.5, Number.NaN]) {
        await expect(mountPassthrough({ layers: { lower, upper }, mountpoint: mnt, upperLimitBytes: bad })).rejects.toBeInstanceOf(FilesystemError);
      }
      await expect(mountPassthrough({ root: lower, mountpoint: mnt, upperLimitBytes: MiB })).rejects.toMatchObject({ code: "InvalidOptions" });
    } finally {
      rmrf(base);
    }
  });
});
