import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKER_CLI } from "../helpers.js";
import { mountsUnder, processesMentioning, Project, vmSkipReason, waitFor } from "./harness.js";

const REPO = fileURLToPath(new URL("../../../..", import.meta.url));
const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping dev-mode VM tests: ${skip}`);

function nodeBaseImage(): string {
  const layout = execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8", timeout: 900_000 }).trim();
  return `oci:${layout}:latest`;
}

interface DevRun {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
}

function startDev(p: Project, dir: string, env: NodeJS.ProcessEnv): DevRun {
  let out = "";
  let err = "";
  const child = spawn(process.execPath, [WORKER_CLI, "dev", dir], { cwd: p.dir, env: { ...process.env, ...p.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, out: () => out, err: () => err, exited };
}

function project(root: string, name: string, install: string, source: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(
    join(dir, "iii.worker.yaml"),
    `name: ${name}\nruntime:\n  language: node\n  packageManager: npm\nscripts:\n  install: ${JSON.stringify(install)}\n  start: node src/index.js\n`,
  );
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }));
  writeFileSync(join(dir, "src/index.js"), source);
  return dir;
}

describe.skipIf(!!skip)("iii worker dev in a real VM (vm)", () => {
  let image: string;
  const p = new Project();
  beforeAll(() => {
    image = nodeBaseImage();
  }, 900_000);
  afterAll(() => p.dispose());

  it("hot-reloads the workload on a source edit without rebooting, and Ctrl-C leaves nothing behind", async () => {
    // The first version also says who PID 1 is and its resident memory: the static init in the node dev image.
    const pid1 = 'const fs = require("fs"); console.log("pid1", fs.readFileSync("/proc/1/cmdline", "utf8").replace(/\\0/g, " ").trim(), (/^VmRSS:.*$/m.exec(fs.readFileSync("/proc/1/status", "utf8")) || ["?"])[0]);';
    const dir = project(p.dir, "reload", "echo installed", `${pid1} console.log("version one"); setInterval(() => {}, 1000);\n`);
    const dev = startDev(p, dir, { III_DEV_IMAGE_NODE: image });
    try {
      await waitFor(() => dev.out().includes("version one"), 180_000, "the first version's output").catch((error: Error) => {
        throw new Error(`${error.message}\n--- dev stderr ---\n${dev.err()}${p.diagnostics("iii-dev-reload")}`);
      });
      expect(readFileSync(join(dir, ".iii/dev/install.key"), "utf8").length).toBeGreaterThan(0);
      const rss = /^pid1 \/init\.krun VmRSS:\s+(\d+) kB$/m.exec(dev.out());
      expect(rss, dev.out()).not.toBeNull();
      console.log(`[vm] node dev image: PID 1 is /init.krun, VmRSS ${rss![1]} kB`);
      expect(Number(rss![1])).toBeLessThanOrEqual(5 * 1024);
      const edited = Date.now();
      writeFileSync(join(dir, "src/index.js"), 'console.log("version two"); setInterval(() => {}, 1000);\n');
      await waitFor(() => dev.out().includes("version two"), 30_000, "the restarted workload's output");
      const reloadMs = Date.now() - edited;
      console.log(`[vm] dev reload: source edit → restarted workload's first line in ${reloadMs} ms`);
      // Measured 1.1–1.5 s on a quiet 2-core host (TCG); the bound only catches a reboot or a hang under load.
      expect(reloadMs).toBeLessThan(15_000);
      const supervisorLog = p.read("managed/iii-dev-reload/logs/supervisor.log", dir);
      expect(supervisorLog.match(/ready in \d+ ms/g)).toHaveLength(1);
      expect(supervisorLog).toContain("restarting the workload");
    } finally {
      dev.child.kill("SIGINT");
    }
    expect(await dev.exited).toBe(130);
    expect(mountsUnder(p.home)).toEqual([]);
    expect(processesMentioning(p.managed("iii-dev-reload", dir))).toEqual([]);
  }, 300_000);

  it("a failing install does not write the cache marker and ends the session with its status", async () => {
    const dir = project(p.dir, "badinstall", "echo trying; exit 3", 'console.log("never");\n');
    const dev = startDev(p, dir, { III_DEV_IMAGE_NODE: image });
    const code = await dev.exited;
    expect(code).toBe(3);
    expect(dev.err()).toContain("install failed");
    expect(dev.out()).not.toContain("never");
    expect(existsSync(join(dir, ".iii/dev/install.key"))).toBe(false);
    expect(mountsUnder(p.home)).toEqual([]);
  }, 300_000);
});
