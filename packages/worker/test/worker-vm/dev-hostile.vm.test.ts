import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKER_CLI } from "../helpers.js";
import { mountsUnder, processesMentioning, Project, vmSkipReason, waitFor } from "./harness.js";

// `iii worker dev` against its own guest: the workload writes the live project (/workspace) and leaves there what
// the host reads next. Before the host's reads were bounded to regular files in the project, a link loop at an
// install input made the watcher's install check throw ELOOP outside any handler: the dev CLI died with a stack
// trace and the VM ran on (dev sandboxes are not in iii.workers.yaml, so no `iii worker` command listed or stopped it).

const REPO = fileURLToPath(new URL("../../../..", import.meta.url));
const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping hostile dev-guest VM tests: ${skip}`);

describe.skipIf(!!skip)("iii worker dev against a hostile dev guest (vm)", () => {
  let image: string;
  const p = new Project();
  beforeAll(() => {
    const layout = execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8", timeout: 900_000 }).trim();
    image = `oci:${layout}:latest`;
  }, 900_000);
  afterAll(() => p.dispose());

  it("a link loop the guest plants at package-lock.json: the CLI restarts the workload and keeps running; Ctrl-C still stops the VM", async () => {
    const dir = join(p.dir, "loop");
    mkdirSync(join(dir, "src"), { recursive: true });
    writeFileSync(join(dir, "iii.worker.yaml"), 'name: loop\nruntime:\n  language: node\n  packageManager: npm\nscripts:\n  install: "echo installed"\n  start: node src/index.js\n');
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "loop", version: "1.0.0", private: true }));
    writeFileSync(
      join(dir, "src/index.js"),
      [
        'const fs = require("fs");',
        'try { fs.symlinkSync("package-lock.json", "/workspace/package-lock.json"); console.log("planted loop"); } catch (e) { console.log("again", e.code); }',
        "setInterval(() => {}, 1000);",
        "",
      ].join("\n"),
    );
    let out = "";
    let err = "";
    const child: ChildProcess = spawn(process.execPath, [WORKER_CLI, "dev", dir], { cwd: p.dir, env: { ...process.env, ...p.env, III_DEV_IMAGE_NODE: image }, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (err += d));
    let exitCode: number | null | undefined;
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve((exitCode = code))));
    try {
      // The loop is an install-input event: the host re-installs (its key cannot match the guest's) and the workload
      // runs again, finding its link in place. (The first run's own line is not waited for: the restart may cut it.)
      await waitFor(() => out.includes("again EEXIST") || exitCode !== undefined, 180_000, "the restarted workload").catch((error: Error) => {
        throw new Error(`${error.message}\n--- dev stderr ---\n${err}${p.diagnostics("iii-dev-loop", dir)}`);
      });
      expect(err).toMatch(/package-lock\.json changed.*restarting the workload/);
      expect(exitCode, err).toBeUndefined();
      expect(err).not.toContain("ELOOP");
    } finally {
      child.kill("SIGINT");
    }
    expect(await exited).toBe(130);
    expect(mountsUnder(p.home)).toEqual([]);
    expect(processesMentioning(p.managed("iii-dev-loop", dir))).toEqual([]);
  }, 300_000);
});
