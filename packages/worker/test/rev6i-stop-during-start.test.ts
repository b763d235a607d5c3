import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { holdImagesForPrune } from "../src/images/cache/in-use-lock.js";
import { projectKey } from "../src/paths.js";
import { runWorkerCli, WORKER_CLI } from "./helpers.js";
import { wat } from "./wasm/wat.js";

// Review rev6i: `stop` while a `start` of the same worker is under way but has not recorded its run yet (its checks,
// an image pull, the supervisor or runner spawning; vm.json comes last). The stop said "not running" and exited 0,
// and the start then went on: the worker ran after a stop that succeeded. The gap is held open here the way a
// `prune` holds it: the start waits for the image cache's lock, after it took the worker's operation lock.

const dir = mkdtempSync(join(tmpdir(), "iii-rev6i-stop-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Sleeps in poll_oneoff for ever (1000 s at a time): a worker that stays running without using a CPU. */
const SLEEPER = `(module
 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 1)
 (func (export "_start")
  (i32.store8 (i32.const 8) (i32.const 0))
  (i32.store (i32.const 16) (i32.const 1))
  (i64.store (i32.const 24) (i64.const 1000000000000))
  (loop $l (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))) (br $l))))`;

/** Whether some process holds an exclusive flock on `path` (from /proc/locks: no lock is taken to find out). */
function flockHeld(path: string): boolean {
  if (!existsSync(path)) return false;
  const ino = statSync(path).ino;
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .some((line) => /\bFLOCK\b.*\bWRITE\b/.test(line) && line.split(/\s+/).some((field) => field.endsWith(`:${ino}`)));
}

interface Row {
  name: string;
  status: string;
  pid: number | null;
}

describe("stop while a start of the same worker is under way (rev6i)", () => {
  it("the stop waits for the start and stops what it started: the worker does not run on after a stop that succeeded", async () => {
    const project = join(dir, "project");
    const home = join(dir, "home");
    mkdirSync(project, { recursive: true });
    writeFileSync(join(project, "sleeper.wasm"), await wat(SLEEPER));
    const env = { III_HOME: home };
    const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env });
    const added = await cli(["add", "./sleeper.wasm", "--name", "s"]);
    expect(added.code, added.stderr).toBe(0);

    const prune = await holdImagesForPrune(home);
    let released = false;
    const release = async () => {
      if (!released) await prune.release();
      released = true;
    };
    let stopRun: ReturnType<typeof spawn> | undefined;
    try {
      const start = cli(["start", "s"]);
      // The start holds the worker's operation lock and now waits for the cache lock: it has recorded nothing.
      const opLock = join(home, "locks", projectKey(project), "s.lock");
      const deadline = Date.now() + 20_000;
      while (!flockHeld(opLock)) {
        if (Date.now() > deadline) throw new Error("the start never took the worker's operation lock");
        await sleep(20);
      }
      expect(existsSync(join(home, "managed", projectKey(project), "s", "vm.json"))).toBe(false);

      stopRun = spawn(process.execPath, [WORKER_CLI, "stop", "s", "--timeout", "2"], { cwd: project, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let stopErr = "";
      stopRun.stderr!.on("data", (d) => (stopErr += d));
      let stopEnded = false;
      const stopCode = new Promise<number | null>((resolve) => stopRun!.on("close", resolve)).finally(() => (stopEnded = true));
      // Either the stop has ended (it found nothing to stop) or it says it waits for the start.
      const seen = await Promise.race([stopCode.then(() => "ended" as const), (async () => {
        while (!/waiting for the start/.test(stopErr) && !stopEnded) await sleep(20);
        return "waiting" as const;
      })()]);
      await release();
      const started = await start;
      const code = await stopCode;
      expect(started.code, started.stderr).toBe(0);
      expect({ seen, code, stderr: stopErr }).toMatchObject({ seen: "waiting", code: 0 });
      expect(stopErr).toMatch(/stopped s/);
      const rows = JSON.parse((await cli(["list", "--json"])).stdout) as Row[];
      expect(rows.find((r) => r.name === "s")?.status).not.toMatch(/running|pending/);
    } finally {
      await release();
      stopRun?.kill();
      await cli(["stop", "s", "--timeout", "1"]);
    }
  }, 90_000);
});
