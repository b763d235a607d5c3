import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runWorkerCli } from "./helpers.js";
import { wat } from "./wasm/wat.js";

// Review rev6h (low): the runner armed --max-execution-ms with one setTimeout, and Node fires a delay past 2^31-1 ms
// (~24.8 days) after 1 ms: a long-lived worker given 35 days ended at once as "failed: timeout". A real module
// (spins ~0.2 s, exits 7) under the real runner, started through the CLI.

const SPIN = `(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32))) (memory (export "memory") 1)
 (func (export "_start") (local $i i32)
  (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 200000000))))
  (call $exit (i32.const 7))))`;

let root: string;
let project: string;
const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: join(root, "home") } });

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "iii-rev6h-timeout-"));
  project = join(root, "project");
  mkdirSync(project);
  writeFileSync(join(project, "spin.wasm"), await wat(SPIN));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function lastStatus(name: string): Promise<string> {
  const rows = JSON.parse((await cli(["list", "--json"])).stdout) as { name: string; status: string; lastExit: { reason: string } | null }[];
  const row = rows.find((r) => r.name === name)!;
  return `${row.status}: ${row.lastExit?.reason ?? ""}`;
}

it("a --max-execution-ms past 2^31-1 ms does not end the run at once; a short one still does", async () => {
  expect((await cli(["add", "./spin.wasm", "--name", "long", "--max-execution-ms", "3000000000"])).code).toBe(0);
  expect((await cli(["add", "./spin.wasm", "--name", "short", "--max-execution-ms", "50"])).code).toBe(0);
  const long = await cli(["start", "long"]);
  expect(long.stderr).not.toMatch(/timeout/);
  await expect.poll(() => lastStatus("long"), { timeout: 20_000 }).toBe("completed: exit 7");
  await cli(["start", "short"]);
  await expect.poll(() => lastStatus("short"), { timeout: 20_000 }).toBe("failed: timeout");
}, 60_000);
