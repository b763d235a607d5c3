import { spawn } from "node:child_process";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKER_CLI } from "../helpers.js";
import { mountsUnder, processesMentioning, Project, vmSkipReason } from "./harness.js";

const REPO = fileURLToPath(new URL("../../../..", import.meta.url));
const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping dev --cap-add VM test: ${skip}`);

describe.skipIf(!!skip)("iii worker dev --cap-add / --cap-drop (vm)", () => {
  let image: string;
  const p = new Project();
  beforeAll(() => {
    image = `oci:${execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8", timeout: 900_000 }).trim()}:latest`;
  }, 900_000);
  afterAll(() => p.dispose());

  it("the dev workload runs with the set add would give it (Docker's default +SYS_TIME -NET_RAW: CapBnd aa0405fb)", async () => {
    const dir = join(p.dir, "caps");
    mkdirSync(join(dir, "src"), { recursive: true });
    writeFileSync(join(dir, "iii.worker.yaml"), "name: caps\nruntime:\n  language: node\n  packageManager: npm\nscripts:\n  install: \"true\"\n  start: node src/index.js\n");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "caps", version: "1.0.0", private: true }));
    writeFileSync(join(dir, "src/index.js"), 'console.log((/^CapBnd:.*$/m.exec(require("fs").readFileSync("/proc/self/status", "utf8")) || ["?"])[0]);\n');
    let out = "";
    let err = "";
    const child = spawn(process.execPath, [WORKER_CLI, "dev", dir, "--cap-add", "sys_time", "--cap-drop", "CAP_NET_RAW"], {
      cwd: p.dir,
      env: { ...process.env, ...p.env, III_DEV_IMAGE_NODE: image },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (err += d));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code, `${err}${p.diagnostics("iii-dev-caps", dir)}`).toBe(0);
    expect(err).toContain("iii dev: workload capabilities: Docker's default set +SYS_TIME -NET_RAW");
    expect(out).toMatch(/^CapBnd:\s+00000000aa0405fb$/m);
    expect(mountsUnder(p.home)).toEqual([]);
    expect(processesMentioning(p.managed("iii-dev-caps", dir))).toEqual([]);
  }, 300_000);
});
