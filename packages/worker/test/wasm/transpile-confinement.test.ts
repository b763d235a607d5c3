// The child that runs jco on a guest's binary (as root) is held by Node's permission model: a bug in jco's
// JavaScript (or in its wasm, whose files preview2-shim's I/O worker opens) that the binary triggers could read
// jco's code and the input and write the output directory, and no more. Probed with the very flags and prelude
// transpileInChild uses, against the real jco install.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { TRANSPILE_CHILD_PRELUDE, transpileChildPermissions } from "../../src/wasm/transpile.js";

const work = mkdtempSync(join(tmpdir(), "iii-transpile-confine-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function probe(flags: string[], script: string): string {
  const r = spawnSync(process.execPath, [...flags, "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
  return `${r.stdout}${r.stderr}`;
}

let jcoUrl: string | undefined;
try {
  jcoUrl = pathToFileURL(createRequire(import.meta.url).resolve("@bytecodealliance/jco")).href;
} catch {
  console.warn("SKIP transpile-confinement: @bytecodealliance/jco (an optional dependency) is not installed");
}

describe.skipIf(!jcoUrl)("the transpile child's permissions", () => {
  const outDir = join(work, "out");
  const input = `${outDir}.in.wasm`;
  const outside = join(work, "outside.txt");
  const fromWorker = join(work, "from-worker.txt");
  const secret = join(work, "secret.txt");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(input, "\0asm");
  writeFileSync(secret, "host secret");
  const attempts = `
    import { readFileSync, writeFileSync } from "node:fs";
    import { execFileSync } from "node:child_process";
    const tryIt = (name, f) => { try { f(); console.log(name + ": done"); } catch (e) { console.log(name + ": " + (e.code ?? e.message)); } };
    await import(${JSON.stringify(jcoUrl ?? "")});
    console.log("jco: loaded");
    tryIt("read input", () => readFileSync(${JSON.stringify(input)}));
    tryIt("write output", () => writeFileSync(${JSON.stringify(join(outDir, "component.js"))}, "x"));
    tryIt("read secret", () => readFileSync(${JSON.stringify(secret)}));
    tryIt("write outside", () => writeFileSync(${JSON.stringify(outside)}, "x"));
    tryIt("spawn", () => execFileSync("/bin/true"));
    // as preview2-shim makes its I/O worker: execArgv [] (outside the permission model unless the prelude ran)
    const { Worker } = await import("node:worker_threads");
    const w = new Worker(${JSON.stringify(`require("node:fs").writeFileSync(${JSON.stringify(fromWorker)}, "x")`)}, { eval: true, execArgv: [] });
    const outcome = await new Promise((r) => { w.once("error", (e) => r(e.code ?? e.message)); w.once("exit", () => r("done")); });
    console.log("worker write outside: " + outcome);
  `;

  it("jco loads, the input is read and the output written; nothing else is read, written or run, from a worker either", () => {
    const out = probe(transpileChildPermissions(input, outDir), TRANSPILE_CHILD_PRELUDE + attempts);
    expect(out).toContain("jco: loaded");
    expect(out).toContain("read input: done");
    expect(out).toContain("write output: done");
    expect(out).toContain("read secret: ERR_ACCESS_DENIED");
    expect(out).toContain("write outside: ERR_ACCESS_DENIED");
    expect(out).toContain("spawn: ERR_ACCESS_DENIED");
    expect(out).toContain("worker write outside: ERR_ACCESS_DENIED");
    expect(existsSync(outside)).toBe(false);
    expect(existsSync(fromWorker)).toBe(false);
  }, 90_000);

  it("without the prelude a worker made with execArgv [] writes outside despite the flags (what the prelude closes)", () => {
    const out = probe(transpileChildPermissions(input, outDir), attempts);
    expect(out).toContain("write outside: ERR_ACCESS_DENIED");
    expect(out).toContain("worker write outside: done");
    rmSync(fromWorker, { force: true });
  }, 90_000);

  it("without them the same child reads, writes and runs anything (what the flags take away)", () => {
    const out = probe([], attempts);
    expect(out).toContain("read secret: done");
    expect(out).toContain("write outside: done");
    expect(out).toContain("spawn: done");
    rmSync(outside, { force: true });
    rmSync(fromWorker, { force: true });
  }, 90_000);
});
