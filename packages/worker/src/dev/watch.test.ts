import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { classifyChange, watchProject, type ProjectWatcher } from "./watch.js";

describe("classifyChange", () => {
  it("root manifests and lockfiles are install inputs", () => {
    for (const path of ["iii.worker.yaml", "package.json", "pnpm-lock.yaml", "yarn.lock", "bun.lockb", "bun.lock",
      "package-lock.json", "requirements.txt", "pyproject.toml"]) {
      expect(classifyChange(path)).toBe("install-input");
    }
  });

  it("the same names deeper down, and everything else, are source", () => {
    expect(classifyChange("src/index.js")).toBe("source");
    expect(classifyChange("sub/package.json")).toBe("source");
    expect(classifyChange("./main.py")).toBe("source");
  });

  it("ignores dependency, VCS, build, venv and cache directories and editor droppings", () => {
    for (const path of ["node_modules/x/index.js", "node_modules", ".git/HEAD", "dist/a.js", ".venv/bin/python",
      ".iii/dev/install.key", "pkg/__pycache__/a.pyc", "src/.index.js.swp", "src/4913", "src/a.js~", "src/.#a.js"]) {
      expect(classifyChange(path)).toBe("ignored");
    }
  });
});

describe("watchProject (real files)", () => {
  let dir: string;
  let watcher: ProjectWatcher | undefined;
  afterEach(async () => {
    watcher?.close();
    watcher = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  async function setup(): Promise<{ sources: string[][]; installs: Array<[string[], string[]]> }> {
    dir = await mkdtemp(join(tmpdir(), "iii-dev-watch-"));
    await mkdir(join(dir, "src"));
    await mkdir(join(dir, "node_modules/dep"), { recursive: true });
    await mkdir(join(dir, ".git"));
    await writeFile(join(dir, "src/index.js"), "1");
    await writeFile(join(dir, "package.json"), "{}");
    const sources: string[][] = [];
    const installs: Array<[string[], string[]]> = [];
    watcher = watchProject(dir, {
      debounceMs: 80,
      onSource: (paths) => sources.push(paths),
      onInstallInput: (inputs, all) => installs.push([inputs, all]),
      onError: (error) => {
        throw error;
      },
    });
    await watcher.ready;
    return { sources, installs };
  }

  it("reports a source edit once, debounced", async () => {
    const { sources, installs } = await setup();
    for (let i = 0; i < 5; i++) await writeFile(join(dir, "src/index.js"), String(i));
    await expect.poll(() => sources.length, { timeout: 3000 }).toBe(1);
    await sleep(200);
    expect(sources).toEqual([["src/index.js"]]);
    expect(installs).toEqual([]);
  });

  it("reports an install input separately, with the rest of its batch", async () => {
    const { sources, installs } = await setup();
    await writeFile(join(dir, "src/index.js"), "2");
    await writeFile(join(dir, "package-lock.json"), "{}");
    await expect.poll(() => installs.length, { timeout: 3000 }).toBe(1);
    expect(installs[0]).toEqual([["package-lock.json"], ["package-lock.json", "src/index.js"]]);
    await sleep(200);
    expect(sources).toEqual([]);
  });

  it("ignores node_modules, .git, dist, .venv and .iii", async () => {
    const { sources, installs } = await setup();
    await writeFile(join(dir, "node_modules/dep/index.js"), "x");
    await writeFile(join(dir, ".git/index"), "x");
    await mkdir(join(dir, "dist"));
    await writeFile(join(dir, "dist/out.js"), "x");
    await mkdir(join(dir, ".venv/bin"), { recursive: true });
    await writeFile(join(dir, ".venv/bin/python"), "x");
    await mkdir(join(dir, ".iii/dev"), { recursive: true });
    await writeFile(join(dir, ".iii/dev/install.key"), "x");
    await sleep(400);
    expect(sources).toEqual([]);
    expect(installs).toEqual([]);
  });

  it("watches directories created after it started, including files already in them", async () => {
    const { sources } = await setup();
    await mkdir(join(dir, "src/lib/deep"), { recursive: true });
    await writeFile(join(dir, "src/lib/deep/a.js"), "a");
    await expect.poll(() => sources.flat(), { timeout: 3000 }).toContain("src/lib/deep/a.js");
    const before = sources.length;
    await sleep(150);
    await writeFile(join(dir, "src/lib/deep/a.js"), "b");
    await expect.poll(() => sources.length, { timeout: 3000 }).toBe(before + 1);
    expect(sources.at(-1)).toEqual(["src/lib/deep/a.js"]);
  });

  it("sees an editor's atomic save (write to a temp file, rename over)", async () => {
    const { sources } = await setup();
    await writeFile(join(dir, "src/.index.js.tmp123"), "new");
    await rename(join(dir, "src/.index.js.tmp123"), join(dir, "src/index.js"));
    await expect.poll(() => sources.flat(), { timeout: 3000 }).toContain("src/index.js");
  });

  it("reports nothing after close", async () => {
    const { sources } = await setup();
    watcher!.close();
    await writeFile(join(dir, "src/index.js"), "closed");
    await sleep(300);
    expect(sources).toEqual([]);
  });

  /** inotify watches this process holds (one `inotify wd:` line per watch in /proc/self/fdinfo). */
  function inotifyWatches(): number {
    let count = 0;
    for (const fd of readdirSync("/proc/self/fdinfo")) {
      let info: string;
      try {
        info = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
      } catch {
        continue;
      }
      for (const line of info.split("\n")) if (line.startsWith("inotify wd:")) count++;
    }
    return count;
  }

  // Security review s14 #6: the dev guest writes the project; a link it plants must not walk the watcher over
  // the host (one inotify watch per host directory, host file events taken as project changes).
  it.each([
    ["at the root", "x"],
    ["in a directory created after the start, once it is watched", "sub/x"],
  ])("never descends into a link to a host directory planted %s; real new directories are still watched", async (_, at) => {
    const { sources } = await setup();
    const before = inotifyWatches();
    expect(before).toBeGreaterThanOrEqual(2); // the root and src
    await mkdir(join(dir, "sub"));
    await sleep(300);
    await symlink("/usr", join(dir, at));
    await sleep(1500);
    await mkdir(join(dir, "real/deep"), { recursive: true });
    await writeFile(join(dir, "real/deep/a.js"), "a");
    await expect.poll(() => sources.flat(), { timeout: 3000 }).toContain("real/deep/a.js");
    // sub, real and real/deep: three more (without the defence, thousands: one per directory under /usr).
    expect(inotifyWatches() - before).toBe(3);
  });
});

