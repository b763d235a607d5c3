/**
 * `node bench/dev/run.mjs [--edits N] [--full N]`: dev mode's hot reload of examples/hello-worker (the real
 * iii-sdk, installed in the guest) against the engine stand-in. For each source edit it times the edit →
 * restart requested (watcher), → workload restarted (the dev script's `start:` line, after the old process
 * exited and the install check), → the restarted workload's first line. Baseline, in the same run: a full
 * stop (Ctrl-C) and a new `iii worker dev` → first line, with the install already cached. The guest installs
 * from an npm registry on this host serving the lockfile's tarballs (`dev --host-port`), never the public one.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { appendFileSync, cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { median } from "../boot/raw-floor.js";
import { ensureTarballs, lockedPackages, startNpmRegistry, type NpmRegistry } from "../../test/worker-vm/npm-registry.js";

const { values } = parseArgs({ options: { edits: { type: "string", default: "7" }, full: { type: "string", default: "3" } } });
const REPO = fileURLToPath(new URL("../../../..", import.meta.url));
const CLI = join(REPO, "packages/worker/dist/cli.js");
const STANDIN = join(REPO, "tools/engine-standin/dist/cli.js");
const work = mkdtempSync("/tmp/iii-bench-dev-");
const env = { ...process.env, III_HOME: join(work, "h") };
const project = join(work, "hello-worker");

/** A child whose output lines are kept with the time each arrived. */
class Timed {
  readonly lines: { at: number; text: string }[] = [];
  readonly exited: Promise<number | null>;
  constructor(readonly child: ChildProcess) {
    for (const stream of [child.stdout!, child.stderr!]) {
      let partial = "";
      stream.on("data", (chunk: Buffer) => {
        const at = performance.now();
        const parts = (partial + chunk.toString()).split("\n");
        partial = parts.pop()!;
        for (const text of parts) this.lines.push({ at, text });
      });
    }
    this.exited = new Promise((resolve) => child.on("exit", (code) => resolve(code)));
  }
  count(needle: string): number {
    return this.lines.filter((l) => l.text.includes(needle)).length;
  }
  /** When the `n`th line containing `needle` arrived (1-based), waiting for it. */
  async nth(needle: string, n: number, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.filter((l) => l.text.includes(needle))[n - 1];
      if (hit) return hit.at;
      if (performance.now() > deadline) throw new Error(`no ${n}. "${needle}" within ${timeoutMs} ms:\n${this.lines.map((l) => l.text).join("\n")}`);
      await sleep(5);
    }
  }
}

function startDev(port: number, image: string, registryPort: number): Timed {
  return new Timed(
    spawn(process.execPath, [CLI, "dev", project, "--engine-url", `ws://localhost:${port}`, "--host-port", String(registryPort)], {
      env: { ...env, III_DEV_IMAGE_NODE: image },
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
}

const FIRST_LINE = "registered hello::greet";
let standin: Timed | undefined;
let dev: Timed | undefined;
let registry: NpmRegistry | undefined;
try {
  const packages = lockedPackages(join(REPO, "examples/hello-worker/package-lock.json"));
  await ensureTarballs(packages);
  registry = await startNpmRegistry(packages);
  const image = `oci:${execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8" }).trim()}:latest`;
  cpSync(join(REPO, "examples/hello-worker"), project, { recursive: true, filter: (s) => !/\/(node_modules|\.iii)(\/|$)/.test(s.slice(REPO.length)) });
  writeFileSync(join(project, ".npmrc"), `registry=http://host.iii.internal:${registry.port}/\naudit=false\nfund=false\nupdate-notifier=false\n`);
  standin = new Timed(spawn(process.execPath, [STANDIN, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] }));
  await standin.nth("listening on", 1, 10_000);
  const port = Number(/127\.0\.0\.1:(\d+)/.exec(standin.lines.find((l) => l.text.includes("listening on"))!.text)![1]);

  console.error("bench: first `iii worker dev` (npm install in the guest)…");
  dev = startDev(port, image, registry.port);
  await dev.nth(FIRST_LINE, 1, 900_000);
  await sleep(3_000);

  const requested: number[] = [];
  const restarted: number[] = [];
  const firstLine: number[] = [];
  for (let i = 1; i <= Number(values.edits); i++) {
    const n = { req: dev.count("restarting the workload"), start: dev.count("iii-dev: start:"), line: dev.count(FIRST_LINE) };
    const t0 = performance.now();
    appendFileSync(join(project, "src/index.js"), `// bench edit ${i}\n`);
    requested.push((await dev.nth("restarting the workload", n.req + 1, 30_000)) - t0);
    restarted.push((await dev.nth("iii-dev: start:", n.start + 1, 30_000)) - t0);
    firstLine.push((await dev.nth(FIRST_LINE, n.line + 1, 60_000)) - t0);
    await sleep(3_000);
  }

  const full: number[] = [];
  for (let i = 0; i < Number(values.full); i++) {
    const t0 = performance.now();
    dev.child.kill("SIGINT");
    await dev.exited;
    dev = startDev(port, image, registry.port);
    full.push((await dev.nth(FIRST_LINE, 1, 300_000)) - t0);
    await sleep(2_000);
  }

  const row = (label: string, ms: number, baseline?: number) =>
    console.log(`${label.padEnd(44)}  ${ms.toFixed(0).padStart(7)}${baseline ? `  ${(ms / baseline).toFixed(2).padStart(6)}` : ""}`);
  const f = median(full);
  console.log(`dev-mode hot reload of examples/hello-worker (TCG), median of ${values.edits} edits; baseline: full stop + dev, median of ${values.full}`);
  console.log(`${"metric".padEnd(44)}  ${"ms".padStart(7)}  ${"ratio".padStart(6)}`);
  row("edit → restart requested (watcher)", median(requested));
  row("edit → workload restarted (start: line)", median(restarted), f);
  row("edit → restarted workload's first line", median(firstLine), f);
  row("baseline: Ctrl-C + iii worker dev → first line", f, f);
  console.log(`samples (ms): restarted ${restarted.map((x) => x.toFixed(0)).join(" ")}; first line ${firstLine.map((x) => x.toFixed(0)).join(" ")}; full ${full.map((x) => x.toFixed(0)).join(" ")}`);
} finally {
  if (dev) {
    dev.child.kill("SIGINT");
    await dev.exited;
  }
  standin?.child.kill();
  await registry?.close();
  rmSync(work, { recursive: true, force: true });
}
