import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { watchProject, WATCH_MAX_DIRECTORIES, type ProjectWatcher } from "../src/dev/index.js";

// The dev guest writes the project the host watches. Measured before the bound (watchProject as dev-run wires it):
// 195,000 directories made after the start held 192,540 inotify watches (this host's max_user_watches, every one
// the user may hold) and +448 MiB in the CLI; another program of the same user then failed fs.watch with ENOSPC.

/** inotify watches this process holds (every inotify fd's `inotify wd:` lines). */
function inotifyWatches(): number {
  let watches = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      watches += (readFileSync(`/proc/self/fdinfo/${fd}`, "utf8").match(/^inotify wd:/gm) ?? []).length;
    } catch {
      // closed meanwhile
    }
  }
  return watches;
}

let dir: string;
let watcher: ProjectWatcher | undefined;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-dev-watch-limit-"));
});
afterEach(() => {
  watcher?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the dev watcher's directory bound", () => {
  it(`a guest making ${WATCH_MAX_DIRECTORIES + 2_000} directories after the start: at most ${WATCH_MAX_DIRECTORIES} watched, one notice, changes still seen`, async () => {
    const limits: number[] = [];
    const sources: string[][] = [];
    watcher = watchProject(dir, { debounceMs: 50, maxWaitMs: 200, onSource: (paths) => sources.push(paths), onLimit: (max) => limits.push(max) });
    await watcher.ready;
    const before = inotifyWatches();
    const made = WATCH_MAX_DIRECTORIES + 2_000;
    for (let i = 0; i < made; i++) mkdirSync(join(dir, `d${Math.floor(i / 500)}`, `e${i % 500}`), { recursive: true });
    // Until the watch count settles (each new directory's watch is added from its parent's event).
    let last = -1;
    for (let now = inotifyWatches(); now !== last; now = inotifyWatches()) {
      last = now;
      await sleep(1_000);
    }
    expect(last - before).toBeLessThanOrEqual(WATCH_MAX_DIRECTORIES);
    expect(limits).toEqual([WATCH_MAX_DIRECTORIES]);
    // A file in a watched directory is still a change.
    sources.length = 0;
    writeFileSync(join(dir, "d0", "e0", "x.js"), "1");
    for (let i = 0; i < 50 && sources.length === 0; i++) await sleep(100);
    expect(sources.flat()).toContain(join("d0", "e0", "x.js"));
  }, 120_000);
});
