// review5-s18 #9: `iii worker dev` shares its project read-write, and the project holds what the host acts on later:
// iii.workers.yaml (the next `start` ran the guest's mounts and capabilities) and .git (hooks and config run at the
// user's next commit). The dev workload, as an attacker, tries to change each; only the rest of the project is its.
import { spawn } from "node:child_process";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKER_CLI } from "../helpers.js";
import { mountsUnder, processesMentioning, Project, vmSkipReason } from "./harness.js";

const REPO = fileURLToPath(new URL("../../../..", import.meta.url));
const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping dev protected-paths VM test: ${skip}`);

const ATTACK = `
const fs = require("fs");
const tries = {
  workersFile: () => fs.writeFileSync("iii.workers.yaml", "workers:\\n  api:\\n    image: dir:/srv/api\\n    mounts: ['/:/host']\\n"),
  workersFileRemove: () => fs.unlinkSync("iii.workers.yaml"),
  lockLink: () => fs.symlinkSync("/etc/passwd", "iii.workers.yaml.lock"),
  gitHook: () => fs.writeFileSync(".git/hooks/pre-commit", "#!/bin/sh\\ntouch /tmp/pwned\\n", { mode: 0o755 }),
  gitConfig: () => fs.appendFileSync(".git/config", "[core]\\n\\tfsmonitor = /tmp/evil\\n"),
  gitMoved: () => fs.renameSync(".git", "git-old"),
  ownFile: () => fs.writeFileSync("dist/own.txt", "mine\\n"),
};
const out = {};
for (const [k, f] of Object.entries(tries)) { try { f(); out[k] = "ok"; } catch (e) { out[k] = e.code; } }
// A file first: a change the attack made to a watched file restarts the workload, which can cut a console line.
fs.writeFileSync("dist/result.json", JSON.stringify(out));
console.log("RESULT " + JSON.stringify(out));
`;

describe.skipIf(!!skip)("iii worker dev: the project's workers file and .git are read-only to the guest (vm)", () => {
  let image: string;
  const p = new Project();
  beforeAll(() => {
    image = `oci:${execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8", timeout: 900_000 }).trim()}:latest`;
  }, 900_000);
  afterAll(() => p.dispose());

  it("refuses every change to them (EROFS) and leaves the rest of /workspace writable", async () => {
    const dir = join(p.dir, "proj");
    mkdirSync(join(dir, "src"), { recursive: true });
    // The workload's own write goes where dev's watcher does not look (a change elsewhere restarts it).
    mkdirSync(join(dir, "dist"), { recursive: true });
    mkdirSync(join(dir, ".git", "hooks"), { recursive: true });
    const workers = "workers:\n  api:\n    image: dir:/srv/api\n";
    const gitConfig = "[core]\n\tbare = false\n";
    writeFileSync(join(dir, "iii.workers.yaml"), workers);
    writeFileSync(join(dir, ".git", "config"), gitConfig);
    writeFileSync(join(dir, "iii.worker.yaml"), "name: prot\nruntime:\n  language: node\n  packageManager: npm\nscripts:\n  install: \"true\"\n  start: node src/index.js\n");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "prot", version: "1.0.0", private: true }));
    writeFileSync(join(dir, "src/index.js"), ATTACK);
    let out = "";
    let err = "";
    // Run from the project itself: its iii.workers.yaml is the one `start` reads here.
    const child = spawn(process.execPath, [WORKER_CLI, "dev", "."], { cwd: dir, env: { ...process.env, ...p.env, III_DEV_IMAGE_NODE: image }, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    // The first run's answer is what counts (a change the attack made to a watched file would restart it).
    const resultFile = join(dir, "dist", "result.json");
    const deadline = Date.now() + 180_000;
    while (!existsSync(resultFile) && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.kill("SIGINT");
    const code = await exited;
    expect([0, 130], `${out}${err}${p.diagnostics("iii-dev-prot", dir)}`).toContain(code);
    const result = JSON.parse(existsSync(resultFile) ? readFileSync(resultFile, "utf8") : "{}") as Record<string, string>;
    expect(result).toEqual({
      workersFile: "EROFS",
      workersFileRemove: "EROFS",
      lockLink: "EROFS",
      gitHook: "EROFS",
      gitConfig: "EROFS",
      gitMoved: "EROFS",
      ownFile: "ok",
    });
    expect(readFileSync(join(dir, "iii.workers.yaml"), "utf8")).toBe(workers);
    expect(readFileSync(join(dir, ".git", "config"), "utf8")).toBe(gitConfig);
    expect(existsSync(join(dir, ".git", "hooks", "pre-commit"))).toBe(false);
    expect(readFileSync(join(dir, "dist", "own.txt"), "utf8")).toBe("mine\n");
    expect(mountsUnder(p.home)).toEqual([]);
    expect(processesMentioning(p.managed("iii-dev-prot", dir))).toEqual([]);
  }, 240_000);
});
