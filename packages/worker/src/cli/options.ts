import type { Command } from "commander";
import { IiiError } from "../errors.js";
import type { PullPolicy } from "../images/index.js";
import { DEFAULT_STOP_GRACE_MS } from "../launch/request.js";
import type { WasmSpec } from "../state/model.js";

/** Option parsing shared by the commands (no I/O: every check here runs before a command does anything). */

export const DEFAULT_ENGINE_PORT = 49134;
export const DEFAULT_ENGINE_URL = `ws://localhost:${DEFAULT_ENGINE_PORT}`;
/** `--timeout` of stop, restart and remove --force: the launch contract's default grace, in seconds. */
export const DEFAULT_TIMEOUT_SECONDS = String(DEFAULT_STOP_GRACE_MS / 1000);

export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `--cap-add` / `--cap-drop` of `add` and `dev` (parsed by state/model.ts parseCapabilityOptions). */
export function capabilityOptions(command: Command): Command {
  return command
    .option("--cap-add <capability>", "a Linux capability root in the workload keeps beyond Docker's default set (NET_ADMIN, SYS_TIME, ..., or ALL; repeatable)", collect)
    .option("--cap-drop <capability>", "a capability of the default set root in the workload loses (or ALL; repeatable)", collect);
}

export function parsePullPolicy(text: string): PullPolicy {
  if (text !== "missing" && text !== "always" && text !== "never") {
    throw new IiiError("InvalidOption", `invalid --pull "${text}": expected missing, always or never`);
  }
  return text;
}

export function parseSeconds(text: string, flag: string): number {
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(seconds)) {
    throw new IiiError("InvalidOption", `invalid ${flag} "${text}": expected a number of seconds`);
  }
  return seconds;
}

function parseMs(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) <= 0) throw new IiiError("InvalidOption", `invalid ${flag} "${text}": expected a positive whole number of milliseconds`);
  return Number(text);
}

/** The WASM tier's options of `add`, as the spec's `wasm` section (only what was given). */
export function wasmOptions(opts: Record<string, unknown>): WasmSpec {
  const wasm: WasmSpec = {};
  const maxExecutionMs = parseMs(opts.maxExecutionMs as string | undefined, "--max-execution-ms");
  const cpuBudgetMs = parseMs(opts.cpuBudgetMs as string | undefined, "--cpu-budget-ms");
  if (maxExecutionMs !== undefined) wasm.maxExecutionMs = maxExecutionMs;
  if (cpuBudgetMs !== undefined) wasm.cpuBudgetMs = cpuBudgetMs;
  const network: NonNullable<WasmSpec["network"]> = {};
  if (opts.wasmInheritNetwork) network.inherit = true;
  if (opts.wasmAllowLookup) network.allowIpNameLookup = true;
  const lists = { tcpConnect: "wasmTcpConnect", tcpBind: "wasmTcpBind", udpBind: "wasmUdpBind", udpConnect: "wasmUdpConnect", udpOutgoing: "wasmUdpOutgoing" } as const;
  for (const [key, opt] of Object.entries(lists)) if (opts[opt]) network[key as keyof typeof lists] = opts[opt] as string[];
  if (Object.keys(network).length > 0) wasm.network = network;
  return wasm;
}
