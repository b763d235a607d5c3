import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { defaultWasiNetwork, parseWasiConfig, WASM_PAGE, type WasiConfig } from "./config.js";
import { runnerEnv, runnerNodeFlags, WASM_RUNNER_ENTRY } from "./controller.js";
import type { WasmLaunch } from "./protocol.js";

/**
 * `iii-worker __wasm-run <config>` from the CLI: the runner must run under the permission model, which is a
 * process-wide Node flag, so this re-executes Node with the runner's flags and waits for it (the controller
 * spawns that process directly, without this hop).
 */
export async function runWasmCli(configPath: string): Promise<number> {
  const dir = dirname(configPath);
  let config: WasiConfig;
  try {
    config = parseWasiConfig(readFileSync(configPath, "utf8"));
  } catch {
    // the runner itself records why the config is refused; it needs no dirs for that
    config = { args: [], env: {}, dirs: [], network: defaultWasiNetwork(), limits: { maxMemoryBytes: WASM_PAGE, maxExecutionMs: null, cpuBudgetMs: null }, engine: { url: "ws://localhost:49134" } };
  }
  const launch = JSON.parse(readFileSync(join(dir, "wasm-launch.json"), "utf8")) as WasmLaunch;
  const child = spawn(process.execPath, [...runnerNodeFlags(config, launch, dir, launch.transpiled ? [launch.transpiled] : []), WASM_RUNNER_ENTRY, "__wasm-run", configPath], {
    stdio: "inherit",
    env: runnerEnv(process.env),
  });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on("SIGTERM", forward).on("SIGINT", forward);
  return new Promise((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1))));
}
