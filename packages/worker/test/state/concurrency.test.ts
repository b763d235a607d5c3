import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { runWorkerCli, WORKER_CLI } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-state-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("iii.workers.yaml under concurrent writers", () => {
  it("20 processes adding distinct workers at once lose no update", async () => {
    const cwd = mkdtempSync(join(dir, "c20-"));
    const runs = await Promise.all(
      Array.from({ length: 20 }, (_, i) => runWorkerCli(["add", `ghcr.io/acme/w${i}:1`, "--memory", "256Mi", "--no-pull"], { cwd, env: { III_HOME: join(cwd, "home") } })),
    );
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const file = parse(readFileSync(join(cwd, "iii.workers.yaml"), "utf8")) as { workers: Record<string, { image: string }> };
    expect(Object.keys(file.workers).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `w${i}`).sort());
    expect(file.workers.w7!.image).toBe("ghcr.io/acme/w7:1");
  });

  it("a writer killed with SIGKILL mid-save leaves the old or the new content, never a torn file", async () => {
    const cwd = mkdtempSync(join(dir, "kill-"));
    const path = join(cwd, "iii.workers.yaml");
    // A writer that saves a growing file in a loop, as fast as it can.
    const writer = join(cwd, "writer.mjs");
    const workerIndex = new URL("../../dist/index.js", import.meta.url).href;
    writeFileSync(
      writer,
      `import { updateWorkersFile } from ${JSON.stringify(workerIndex)};
       let i = 0;
       let announced = false;
       for (;;) {
         i += 1;
         await updateWorkersFile(${JSON.stringify(path)}, (f) => {
           const n = Object.keys(f.workers).length;
           for (const k of Object.keys(f.workers)) delete f.workers[k];
           for (let j = 0; j <= n % 50; j++) f.workers["w" + j] = { image: "ghcr.io/a/big-" + "x".repeat(200) + ":" + i, env: { N: String(i) }, resources: {}, ports: [], mounts: [], network: { allow: [], deny: [], hostPorts: [] } };
         });
         if (!announced) { announced = true; process.stdout.write("saving\\n"); }
       }`,
    );
    let validStates = 0;
    for (let round = 0; round < 15; round++) {
      const child = spawn(process.execPath, [writer], { stdio: ["ignore", "pipe", "ignore"] });
      // Kill at a random moment once it is saving in a loop (its start-up time varies with load).
      await new Promise((r) => child.stdout!.once("data", r));
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 60)));
      child.kill("SIGKILL");
      await new Promise((r) => child.on("close", r));
      let text = "";
      try {
        text = readFileSync(path, "utf8");
      } catch {
        continue; // the very first save may not have happened yet
      }
      const parsed = parse(text) as { workers: Record<string, { image: string; env: { N: string } }> };
      const entries = Object.values(parsed.workers);
      expect(entries.length).toBeGreaterThan(0);
      // every worker of one save carries the same generation: a torn or mixed file would not
      expect(new Set(entries.map((w) => w.env.N)).size).toBe(1);
      validStates += 1;
    }
    expect(validStates).toBeGreaterThan(10);
    // the file is still usable by the CLI afterwards (a stale lock from the killed writer is taken over)
    const list = await runWorkerCli(["list", "--json"], { cwd, env: { III_HOME: join(cwd, "home") } });
    expect(list.code, list.stderr).toBe(0);
    expect(WORKER_CLI).toBeTruthy();
  }, 120_000);
});
