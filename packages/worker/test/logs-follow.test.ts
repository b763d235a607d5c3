import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { followFile } from "../src/logs.js";
import { RotatingLog } from "../src/util/rotating-log.js";

// `logs -f` (and dev's output) follow a workload log while the supervisor rotates it. Following by path, the bytes
// written to the old file after the follower's last read and before the rename were never shown (they are in `.1`).

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-logs-follow-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("followFile across rotations", () => {
  it("yields every line once, in order, while the log rotates under it", async () => {
    const path = join(dir, "stdout.log");
    const log = new RotatingLog(path, 8 * 1024);
    const controller = new AbortController();
    let text = "";
    const follower = (async () => {
      for await (const chunk of followFile(path, { from: 0, pollMs: 20, signal: controller.signal })) text += chunk.toString();
    })();
    const lines = 3_000;
    // Paced so the log rotates about every 50 ms, well within two polls of the follower (a log rotated twice
    // between two polls loses a whole file whatever the follower does).
    for (let i = 0; i < lines; i++) {
      await log.write(Buffer.from(`line ${String(i).padStart(5, "0")}\n`));
      if (i % 20 === 19) await sleep(5);
    }
    const last = `line ${String(lines - 1).padStart(5, "0")}\n`;
    for (let i = 0; i < 100 && !text.endsWith(last); i++) await sleep(20);
    controller.abort();
    await follower;
    await log.close();
    const got = text.split("\n").filter(Boolean);
    const missing = lines - new Set(got).size;
    expect({ missing, duplicated: got.length - new Set(got).size }).toEqual({ missing: 0, duplicated: 0 });
    expect(got).toEqual([...got].sort());
  }, 60_000);
});
