import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { heldUnder } from "../../test/held-files.js";
import { RotatingLog } from "./rotating-log.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "iii-rotating-log-"));
  dirs.push(dir);
  return dir;
}

/** Bytes of the log and its `.1` on disk (the `.times` files are charged to the limit, not to these). */
function logBytes(path: string): number {
  return [path, `${path}.1`].reduce((sum, p) => sum + (statSync(p, { throwIfNoEntry: false })?.size ?? 0), 0);
}

describe("RotatingLog", () => {
  it("keeps the bound and one stream under many un-awaited writes across rotations", async () => {
    const dir = tempDir();
    const path = join(dir, "stdout.log");
    const limit = 1024 * 1024;
    const log = new RotatingLog(path, limit);
    const chunkBytes = 16 * 1024;
    const chunks = 4096; // 64 MiB: 64 rotations
    let maxFds = 0;
    let maxDeleted = 0;
    let maxOnDisk = 0;
    const pending: Promise<void>[] = [];
    for (let i = 0; i < chunks; i++) {
      // As the supervisor's old wiring did: a write per chunk, none awaited; 8 per tick.
      pending.push(log.write(Buffer.alloc(chunkBytes, i & 0xff)));
      if (i % 8 === 7) {
        await new Promise((r) => setImmediate(r));
        const held = heldUnder(dir);
        maxFds = Math.max(maxFds, held.fds);
        maxDeleted = Math.max(maxDeleted, held.deletedBytes);
        maxOnDisk = Math.max(maxOnDisk, logBytes(path));
        // The writes stay un-awaited among themselves; this only keeps the test's own memory small.
        if (pending.length > 256) await Promise.all(pending.splice(0, 128));
      }
    }
    await Promise.all(pending);
    const end = heldUnder(dir);
    maxOnDisk = Math.max(maxOnDisk, logBytes(path));
    // The log and its times file, nothing else, at every point.
    expect(maxFds).toBeLessThanOrEqual(2);
    expect(maxDeleted).toBe(0);
    expect(maxOnDisk).toBeLessThanOrEqual(2 * limit);
    expect(end).toEqual({ fds: 2, deletedBytes: 0 });

    // In order: `.1` then the log are the last chunks written, each whole, consecutive.
    const kept = Buffer.concat([readFileSync(`${path}.1`), readFileSync(path)]);
    expect(kept.length % chunkBytes).toBe(0);
    const first = chunks - kept.length / chunkBytes;
    for (let k = 0; k < kept.length / chunkBytes; k++) {
      const chunk = kept.subarray(k * chunkBytes, (k + 1) * chunkBytes);
      expect(chunk[0]).toBe((first + k) & 0xff);
      expect(chunk.at(-1)).toBe((first + k) & 0xff);
    }
    await log.close();
    expect(heldUnder(dir).fds).toBe(0);
  });

  it("close waits for the queued writes, drops later ones, and never rejects", async () => {
    const dir = tempDir();
    const path = join(dir, "out.log");
    const log = new RotatingLog(path, 1024 * 1024);
    const writes = [log.write(Buffer.from("a\n")), log.write(Buffer.from("b\n"))];
    const closed = log.close();
    const late = log.write(Buffer.from("late\n"));
    await Promise.all([...writes, closed, late]);
    expect(readFileSync(path, "utf8")).toBe("a\nb\n");
    expect(heldUnder(dir).fds).toBe(0);
  });

  it("survives a failed write and writes again once the file can be opened", async () => {
    const dir = tempDir();
    const logs = join(dir, "logs");
    mkdirSync(logs);
    const path = join(logs, "out.log");
    const log = new RotatingLog(path, 1024 * 1024);
    await log.write(Buffer.from("one\n"));
    rmSync(logs, { recursive: true });
    // Rotation reopens in a directory that is gone: the open fails, the write resolves all the same.
    const big = Buffer.alloc(1024 * 1024, 0x41);
    await expect(log.write(big)).resolves.toBeUndefined();
    mkdirSync(logs);
    await log.write(Buffer.from("two\n"));
    await log.close();
    expect(readFileSync(path, "utf8")).toBe("two\n");
  });

  it("follow() pauses its source while a write settles", async () => {
    const dir = tempDir();
    const path = join(dir, "out.log");
    const log = new RotatingLog(path, 64 * 1024 * 1024);
    const source = new PassThrough();
    log.follow(source);
    let pausedDuringWrite = false;
    source.once("data", () => queueMicrotask(() => (pausedDuringWrite = source.isPaused())));
    for (let i = 0; i < 100; i++) source.write(Buffer.alloc(4096, 0x30 + (i % 10)));
    source.end();
    await new Promise((r) => source.once("end", r));
    await log.close();
    expect(pausedDuringWrite).toBe(true);
    const data = readFileSync(path);
    expect(data.length).toBe(100 * 4096);
    for (let i = 0; i < 100; i++) expect(data[i * 4096]).toBe(0x30 + (i % 10));
  });
});
