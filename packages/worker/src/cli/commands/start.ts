import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Command } from "commander";
import { IiiError } from "../../errors.js";
import { forEachWorker, requireWorkers } from "../for-each-worker.js";
import { DEFAULT_ENGINE_URL, parsePullPolicy, parseSeconds } from "../options.js";
import type { StandbySupervisor } from "../../launch/spawn.js";
import { claimEarlyStandby, spawnStandby } from "../early-standby.js";
import { StartInterrupt } from "../start-interrupt.js";
import { terminalJson } from "../../util/terminal-safe.js";

/** `iii-worker start`: boots workers' VMs (or WASM runners) and waits for READY. */
export function registerStart(program: Command): void {
  program
    .command("start")
    .description("boot workers' microVMs (detached); returns when each init reports READY")
    .argument("<name...>")
    .option("--engine-url <url>", "engine URL passed to the worker as III_URL/III_ENGINE_URL", DEFAULT_ENGINE_URL)
    .option("--fresh", "discard the worker's writable layer first")
    .option("--boot-timeout <seconds>", "how long to wait for READY", "120")
    .option("--timings", "print the boot timings (supervisor phases and init steps) as JSON")
    .option("--pull <policy>", "missing (default), always or never: when to ask the registry", "missing")
    .option("--capture <file>", "write a pcap of the guest's network traffic (both directions) to this file")
    .action(async (names: string[], opts) => {
      parsePullPolicy(opts.pull);
      parseSeconds(opts.bootTimeout, "--boot-timeout");
      checkEngineUrl(opts.engineUrl);
      if (opts.capture !== undefined && names.length > 1) throw new IiiError("UsageError", "--capture takes one worker (each VM writes its own capture file)");
      if (opts.capture !== undefined) checkCapturePath(opts.capture);
      // One worker: its supervisor is started in standby (by cli.ts, before this module loaded, or now) and loads
      // while the checks below run (launch/spawn.ts).
      const early = claimEarlyStandby(names.length === 1 ? names[0] : undefined);
      const standby = names.length === 1 ? (early ?? (await spawnStandby(names[0]!))) : undefined;
      const interrupt = new StartInterrupt(names, standby);
      try {
        await requireWorkers(names);
        await forEachWorker(names, (name) => interrupt.run(name, (hooks) => startOne(name, opts, standby, hooks)));
      } finally {
        standby?.abort();
        interrupt.dispose();
      }
    });
}

const ENGINE_URL_SCHEMES = ["ws:", "wss:", "http:", "https:"];

/**
 * `--engine-url`: a ws(s) or http(s) URL. Anything else was recorded and handed to the worker as III_URL, and the
 * start reported success ("not a url", "ftp://x:99999"); the worker then failed to reach its engine, out of sight.
 */
export function checkEngineUrl(text: string): void {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new IiiError("InvalidOption", `invalid --engine-url "${text}": expected a URL such as ${DEFAULT_ENGINE_URL}`);
  }
  if (!ENGINE_URL_SCHEMES.includes(url.protocol)) {
    throw new IiiError("InvalidOption", `invalid --engine-url "${text}": expected a ws://, wss://, http:// or https:// URL`);
  }
}

/**
 * `--capture FILE` whose directory does not exist: lifecycle's check (capturePathFor) passes it when an ancestor is
 * writable, but nothing creates it, and the supervisor's capture writer then failed the boot (naming a virtiofsd
 * log's ENOENT) and left a crashed run for the next start to clean up. The rest is capturePathFor's to check.
 */
function checkCapturePath(file: string): void {
  const path = resolve(file);
  const dir = dirname(path);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new IiiError("InvalidOption", `invalid --capture ${file}: cannot write ${path}: directory ${dir} does not exist`);
  }
}

export async function startOne(
  name: string,
  opts: { engineUrl: string; fresh?: boolean; bootTimeout: string; timings?: boolean; pull: string; capture?: string },
  standby?: StandbySupervisor,
  hooks: { signal?: AbortSignal; onSupervisor?: () => void } = {},
): Promise<string> {
  const { startWorker } = await import("../../lifecycle.js");
  // startWorker holds the worker's operation lock until READY: a `remove` meanwhile is refused.
  const result = await startWorker(name, {
    ...(standby ? { standby } : {}),
    ...hooks,
    ...(opts.capture !== undefined ? { capture: opts.capture } : {}),
    pull: parsePullPolicy(opts.pull),
    engineUrl: opts.engineUrl,
    fresh: !!opts.fresh,
    bootTimeoutMs: parseSeconds(opts.bootTimeout, "--boot-timeout") * 1000,
  });
  const lines = [];
  if (result.cleanedCrashed) lines.push(`cleaned up after the crashed previous run of ${name}`);
  lines.push(`started ${name} (${result.tier === "wasm" ? "WASM runner" : "supervisor"} pid ${result.pid}, ready in ${result.timings.ready ?? "?"} ms)`);
  // Guests name some timings (guest:*): valid JSON whose DEL/C1 characters are escaped too (util/terminal-safe.ts).
  if (opts.timings) lines.push(`timings ${terminalJson(result.timings)}`);
  return lines.join("\n");
}
