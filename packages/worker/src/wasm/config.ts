import { IiiError } from "../errors.js";
import { parseMemoryBytes } from "../state/quantity.js";
import type { WorkerSpec } from "../state/model.js";
import { parseSocketPattern } from "./net-guard.js";

/**
 * WASI_CONFIG: the whole configuration of one WASM runner, as one JSON document. Its encoding is a contract
 * between the controller (buildWasiConfig + encodeWasiConfig) and the runner (parseWasiConfig), locked by
 * test/fixtures/wasi_config.golden.json. Every field is always written, booleans included: a dropped `false`
 * must never turn into a default `true` on the other side.
 */
export interface WasiDir {
  hostPath: string;
  guestPath: string;
  readOnly: boolean;
}

export interface WasiNetwork {
  /**
   * Use the host's network stack: an empty connect/outgoing list allows any target (still checked against the
   * egress policy). Binds are never opened by this: an empty bind list allows none (but the UDP `0.0.0.0:0` a
   * client socket needs).
   */
  inherit: boolean;
  /** false: no name resolution at all. */
  allowIpNameLookup: boolean;
  /** `ADDR:PORT` patterns (`*` for any address or port, `ADDR/PREFIX` for a range). */
  tcpBind: string[];
  tcpConnect: string[];
  udpBind: string[];
  udpConnect: string[];
  udpOutgoing: string[];
}

export interface WasiLimits {
  /** Most linear memory of the guest, in bytes (whole 64 KiB pages). */
  maxMemoryBytes: number;
  /** Wall-clock limit of one run; null: none. */
  maxExecutionMs: number | null;
  /** CPU time the guest may use; null: none. */
  cpuBudgetMs: number | null;
}

/** The runner's connection to the iii engine, for components that implement the iii:worker/wasm-worker world. */
export interface WasiEngine {
  /** WebSocket URL of the engine (the runner connects from the host: no gateway rewriting). */
  url: string;
}

export interface WasiConfig {
  args: string[];
  env: Record<string, string>;
  dirs: WasiDir[];
  network: WasiNetwork;
  limits: WasiLimits;
  engine: WasiEngine;
}

/** Set by the controller for every WASM worker, over anything the user gave (the engine shows them). */
export const WASM_RESERVED_ENV = ["III_ISOLATION", "III_WORKER_NAME"] as const;

export const WASM_PAGE = 65_536;
export const DEFAULT_WASM_MEMORY_BYTES = 256 * 1024 * 1024;

export function defaultWasiNetwork(): WasiNetwork {
  return { inherit: false, allowIpNameLookup: false, tcpBind: [], tcpConnect: [], udpBind: [], udpConnect: [], udpOutgoing: [] };
}

/** The controller's side: a worker spec (an iii.workers.yaml entry) → WASI_CONFIG. */
export function buildWasiConfig(name: string, spec: WorkerSpec, engineUrl: string): WasiConfig {
  const wasm = spec.wasm ?? {};
  const memory = spec.resources.memory !== undefined ? parseMemoryBytes(spec.resources.memory) : DEFAULT_WASM_MEMORY_BYTES;
  const net = { ...defaultWasiNetwork(), ...(wasm.network ?? {}) };
  return {
    args: [name, ...(spec.command ?? [])],
    env: Object.fromEntries(
      Object.entries({ ...spec.env, III_ISOLATION: "wasm", III_WORKER_NAME: name }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    ),
    dirs: spec.mounts.map((m) => ({ hostPath: m.host, guestPath: m.guest, readOnly: m.readOnly })),
    network: {
      inherit: net.inherit,
      allowIpNameLookup: net.allowIpNameLookup,
      tcpBind: [...net.tcpBind],
      tcpConnect: [...net.tcpConnect],
      udpBind: [...net.udpBind],
      udpConnect: [...net.udpConnect],
      udpOutgoing: [...net.udpOutgoing],
    },
    limits: {
      maxMemoryBytes: Math.floor(memory / WASM_PAGE) * WASM_PAGE,
      maxExecutionMs: wasm.maxExecutionMs ?? null,
      cpuBudgetMs: wasm.cpuBudgetMs ?? null,
    },
    engine: { url: engineUrl },
  };
}

/** The one encoding: fields in a fixed order, two-space indent, a final newline. */
export function encodeWasiConfig(config: WasiConfig): string {
  const ordered: WasiConfig = {
    args: config.args,
    env: config.env,
    dirs: config.dirs.map((d) => ({ hostPath: d.hostPath, guestPath: d.guestPath, readOnly: d.readOnly })),
    network: {
      inherit: config.network.inherit,
      allowIpNameLookup: config.network.allowIpNameLookup,
      tcpBind: config.network.tcpBind,
      tcpConnect: config.network.tcpConnect,
      udpBind: config.network.udpBind,
      udpConnect: config.network.udpConnect,
      udpOutgoing: config.network.udpOutgoing,
    },
    limits: {
      maxMemoryBytes: config.limits.maxMemoryBytes,
      maxExecutionMs: config.limits.maxExecutionMs,
      cpuBudgetMs: config.limits.cpuBudgetMs,
    },
    engine: { url: config.engine.url },
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

// ---- the runner's side: a strict parser ----

function bad(field: string, message: string): never {
  throw new IiiError("WasiConfigInvalid", `invalid WASI_CONFIG: ${field}: ${message}`);
}

function record(value: unknown, field: string, keys: readonly string[]): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) bad(field, "expected an object");
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) if (!keys.includes(key)) bad(field ? `${field}.${key}` : key, "unknown field");
  for (const key of keys) if (!Object.hasOwn(obj, key)) bad(field ? `${field}.${key}` : key, "missing field");
  return obj;
}

function str(value: unknown, field: string): string {
  if (typeof value !== "string") bad(field, "expected a string");
  return value;
}

function bool(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") bad(field, "expected true or false");
  return value;
}

function patterns(value: unknown, field: string): string[] {
  const list = strings(value, field);
  list.forEach((text, i) => {
    const parsed = parseSocketPattern(text);
    if (typeof parsed === "string") bad(`${field}[${i}]`, parsed);
  });
  return list;
}

function strings(value: unknown, field: string): string[] {
  if (!Array.isArray(value)) bad(field, "expected a list of strings");
  return value.map((v, i) => str(v, `${field}[${i}]`));
}

function limit(value: unknown, field: string, nullable: boolean): number | null {
  if (value === null && nullable) return null;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    bad(field, nullable ? "expected a positive whole number or null" : "expected a positive whole number");
  }
  return value;
}

const ABSOLUTE = /^\//;

/** Reads WASI_CONFIG text into every field; anything it does not understand fails with one line naming the field. */
export function parseWasiConfig(text: string): WasiConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    bad("(document)", `not JSON (${(error as Error).message})`);
  }
  const top = record(raw, "", ["args", "env", "dirs", "network", "limits", "engine"]);
  const args = strings(top.args, "args");
  if (top.env === null || typeof top.env !== "object" || Array.isArray(top.env)) bad("env", "expected a map of strings");
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(top.env as Record<string, unknown>)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) bad(`env.${key}`, "not a valid variable name");
    env[key] = str(value, `env.${key}`);
  }
  if (!Array.isArray(top.dirs)) bad("dirs", "expected a list");
  const dirs = (top.dirs as unknown[]).map((value, i) => {
    const d = record(value, `dirs[${i}]`, ["hostPath", "guestPath", "readOnly"]);
    const dir = { hostPath: str(d.hostPath, `dirs[${i}].hostPath`), guestPath: str(d.guestPath, `dirs[${i}].guestPath`), readOnly: bool(d.readOnly, `dirs[${i}].readOnly`) };
    if (!ABSOLUTE.test(dir.hostPath)) bad(`dirs[${i}].hostPath`, "expected an absolute path");
    if (!ABSOLUTE.test(dir.guestPath) || dir.guestPath.split("/").includes("..")) bad(`dirs[${i}].guestPath`, "expected an absolute path without ..");
    return dir;
  });
  const n = record(top.network, "network", ["inherit", "allowIpNameLookup", "tcpBind", "tcpConnect", "udpBind", "udpConnect", "udpOutgoing"]);
  const network: WasiNetwork = {
    inherit: bool(n.inherit, "network.inherit"),
    allowIpNameLookup: bool(n.allowIpNameLookup, "network.allowIpNameLookup"),
    tcpBind: patterns(n.tcpBind, "network.tcpBind"),
    tcpConnect: patterns(n.tcpConnect, "network.tcpConnect"),
    udpBind: patterns(n.udpBind, "network.udpBind"),
    udpConnect: patterns(n.udpConnect, "network.udpConnect"),
    udpOutgoing: patterns(n.udpOutgoing, "network.udpOutgoing"),
  };
  const l = record(top.limits, "limits", ["maxMemoryBytes", "maxExecutionMs", "cpuBudgetMs"]);
  const maxMemoryBytes = limit(l.maxMemoryBytes, "limits.maxMemoryBytes", false)!;
  if (maxMemoryBytes % WASM_PAGE !== 0) bad("limits.maxMemoryBytes", `expected a multiple of ${WASM_PAGE} (whole pages)`);
  const e = record(top.engine, "engine", ["url"]);
  const url = str(e.url, "engine.url");
  if (!/^wss?:\/\/[^/\s]+/.test(url)) bad("engine.url", "expected a ws:// or wss:// URL");
  return {
    args,
    env,
    dirs,
    network,
    limits: { maxMemoryBytes, maxExecutionMs: limit(l.maxExecutionMs, "limits.maxExecutionMs", true), cpuBudgetMs: limit(l.cpuBudgetMs, "limits.cpuBudgetMs", true) },
    engine: { url },
  };
}
