// scripts/bounded-run.mjs: a package's test run that hangs costs its budget, says where it hangs, and leaves no
// process behind; a run that ends keeps its exit status and output.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const SCRIPT = fileURLToPath(new URL("../../scripts/bounded-run.mjs", import.meta.url));
const dirs: string[] = [];
const strays: number[] = [];
afterEach(() => {
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs the script with its output on pipes, as under turbo; resolves when the script itself exits. */
function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SCRIPT, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b));
    child.stderr.on("data", (b: Buffer) => (stderr += b));
    child.on("exit", (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pidsIn(file: string): number[] {
  return readFileSync(file, "utf8").trim().split(/\s+/).map(Number);
}

describe("bounded-run", () => {
  it("passes a finished command's exit status and output through", async () => {
    const r = await run(["30", "bash", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe("out\n");
    expect(r.stderr).toBe("err\n");
  });

  it("ends a run past its budget, with every process below it (setsid'd and reparented ones too), and says what each was doing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "iii-bounded-"));
    dirs.push(dir);
    const pids = join(dir, "pids");
    const orphanPid = join(dir, "orphan");
    // A shell waiting on a sleeper, a second sleeper in its own session, and the shell's own pid; a third sleeper
    // left the tree (its parent subshell exited: reparented, as a worker's supervisor is when its CLI exits).
    const script = `(setsid sleep 602 & echo $! > ${orphanPid}); sleep 600 & a=$!; setsid sleep 601 & b=$!; echo "$$ $a $b" > ${pids}; wait`;
    const r = await run(["2", "bash", "-c", script], { npm_package_name: "@t/hangs" });
    const [shell, sleeper, detached] = pidsIn(pids);
    const [orphan] = pidsIn(orphanPid);
    for (const pid of [shell, sleeper, detached, orphan]) strays.push(pid as number);
    expect(r.code).toBe(124);
    expect(r.ms).toBeLessThan(20_000);
    expect(r.stderr).toMatch(/^bounded-run: @t\/hangs is still running after its 2 s budget;/m);
    expect(r.stderr).toContain(`${sleeper} (parent ${shell}) sleep state=S: sleep 600`);
    expect(r.stderr).toContain(`${detached} (parent ${shell}) sleep state=S: sleep 601`);
    expect(r.stderr).toMatch(new RegExp(`thread ${sleeper} state=S wchan=\\S*nanosleep`));
    expect(r.stderr).toMatch(new RegExp(`^  ${orphan} \\(parent \\d+\\) sleep state=S: sleep 602$`, "m"));
    expect(r.stderr).toMatch(/FUSE mounts:/);
    expect(r.stderr.trim().split("\n").at(-1)).toBe("bounded-run: @t/hangs FAILED: ran past its 2 s budget (ended it)");
    for (const pid of [shell, sleeper, detached, orphan]) expect(alive(pid as number), `pid ${pid} outlived the budget`).toBe(false);
  });

  it("does not wait for a leftover process that holds the output pipe after the command ended", async () => {
    const dir = mkdtempSync(join(tmpdir(), "iii-bounded-"));
    dirs.push(dir);
    const pids = join(dir, "pids");
    const r = await run(["60", "bash", "-c", `sleep 600 & echo $! > ${pids}; exit 0`]);
    const [leftover] = pidsIn(pids);
    strays.push(leftover as number);
    expect(r.code).toBe(0);
    expect(r.ms).toBeLessThan(15_000);
  });

  it("III_TEST_BUDGET_SCALE stretches the budget", async () => {
    const r = await run(["1", "bash", "-c", "sleep 2; echo done"], { III_TEST_BUDGET_SCALE: "5" });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("done\n");
  });

  it("refuses a budget that is not a positive number, in one line", async () => {
    for (const args of [["soon", "true"], ["0", "true"], ["10"]]) {
      const r = await run(args);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/^bounded-run: usage:/);
    }
  });
});
