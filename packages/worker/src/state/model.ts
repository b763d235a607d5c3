import { posix } from "node:path";
import { capabilityName, GUEST_PATHS } from "@iii/init";
import { IiiError } from "../errors.js";
import type { WasiNetwork } from "../wasm/config.js";
import { parseCpus, parseDiskBytes, parseMemoryBytes } from "./quantity.js";

export interface PortMapping {
  host: number;
  guest: number;
  protocol: "tcp";
}

export interface MountSpec {
  host: string;
  guest: string;
  readOnly: boolean;
  /**
   * How long the guest may trust what it read (virtiofsd cache mode). `auto` (default): names and attributes
   * for a second, file pages until the next open, so host edits show up at once. `always`: until the guest
   * itself changes them; only for directories the host leaves alone while the VM runs (dev mode's dependency
   * directory). Not part of the `HOST:GUEST[:ro]` text form.
   */
  cache?: "auto" | "always";
}

/** `public`: the public internet only (the default); `none`: nothing but allow rules, the engine and host ports. */
export type NetworkMode = "public" | "none";

export interface NetworkSpec {
  /** Absent means `public`. */
  mode?: NetworkMode;
  /** Extra allow rules (CIDR, `host:port`, domain), on top of the closed defaults. */
  allow: string[];
  deny: string[];
  /** Host loopback ports the guest may reach through the gateway, besides the engine port. */
  hostPorts: number[];
}

export interface Resources {
  cpus?: string;
  memory?: string;
  /**
   * Most bytes the writable root layer may hold (`--disk`, a quantity as given); absent: DEFAULT_DISK_BYTES.
   * Writable `-m` shares are the user's own host directories and are not counted.
   */
  disk?: string;
  /** Most processes (and threads) the guest's workload and execs may have together (cgroup pids.max). */
  pids?: number;
}

export const PIDS_MIN = 8;
export const PIDS_MAX = 4_194_304;

/** `--pids N`: a whole number from PIDS_MIN to PIDS_MAX. */
export function parsePids(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < PIDS_MIN || n > PIDS_MAX) {
    throw new IiiError("InvalidQuantity", `invalid pids "${text}": must be a whole number from ${PIDS_MIN} to ${PIDS_MAX}`);
  }
  return n;
}

export function parseNetworkMode(text: string): NetworkMode {
  if (text !== "public" && text !== "none") throw new IiiError("InvalidOption", `invalid --network "${text}": expected public or none`);
  return text;
}

/**
 * Capabilities root in the workload keeps beyond or below Docker's default set (`--cap-add` / `--cap-drop`, names
 * without CAP_, or ALL), resolved as Docker does (@iii/init resolveCapabilities). They bound what the workload
 * may do to its own guest kernel; the VM around it stays the boundary to the host.
 */
export interface CapabilitiesSpec {
  add: string[];
  drop: string[];
}

/** `--cap-add` / `--cap-drop` values: NET_ADMIN, net_admin, CAP_NET_ADMIN or ALL → the canonical name. */
export function parseCapabilityNames(texts: readonly string[], what: string): string[] {
  const names = texts.map((text) => {
    if (text.trim().toUpperCase() === "ALL") return "ALL";
    const name = capabilityName(text);
    if (!name) throw new IiiError("InvalidOption", `invalid ${what} "${text}": not a Linux capability (e.g. NET_ADMIN, SYS_TIME, or ALL)`);
    return name;
  });
  return [...new Set(names)];
}

/** `--cap-add` / `--cap-drop` as given (add and dev): the spec's `capabilities`, absent when neither was. */
export function parseCapabilityOptions(capAdd: readonly string[] = [], capDrop: readonly string[] = []): CapabilitiesSpec | undefined {
  const add = parseCapabilityNames(capAdd, "--cap-add");
  const drop = parseCapabilityNames(capDrop, "--cap-drop");
  return add.length + drop.length > 0 ? { add, drop } : undefined;
}

/** The WASM tier's own settings of a `wasm:` worker (see src/wasm/config.ts for their meaning). */
export interface WasmSpec {
  /** For a binary pulled from a registry: the artifact it came from (`reference@manifest digest`). */
  source?: string;
  maxExecutionMs?: number;
  cpuBudgetMs?: number;
  network?: Partial<WasiNetwork>;
}

const WASM_NET_BOOLEANS = ["inherit", "allowIpNameLookup"] as const;
const WASM_NET_LISTS = ["tcpBind", "tcpConnect", "udpBind", "udpConnect", "udpOutgoing"] as const;

export interface WorkerSpec {
  /** An image reference, a local source (`dir:`, `oci:`, …) or `wasm:/abs/path.wasm` for the WASM tier. */
  image: string;
  /** Overrides the image's Entrypoint+Cmd when set. */
  command?: string[];
  env: Record<string, string>;
  resources: Resources;
  ports: PortMapping[];
  mounts: MountSpec[];
  network: NetworkSpec;
  /** VM workers: changes to the workload's default capability set. */
  capabilities?: CapabilitiesSpec;
  /** Only for `wasm:` workers. */
  wasm?: WasmSpec;
}

export function isWasmImage(image: string): boolean {
  return image.startsWith("wasm:");
}

export interface WorkersFile {
  workers: Record<string, WorkerSpec>;
}

const WORKER_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export function validateWorkerName(name: string): string {
  if (!WORKER_NAME.test(name)) {
    throw new IiiError(
      "InvalidWorkerName",
      `invalid worker name "${name}": use 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

export function parsePort(text: string, what: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new IiiError("InvalidOption", `invalid ${what} "${text}": must be a port number from 1 to 65535`);
  }
  return port;
}

/** `HOST:GUEST[/tcp]` → a TCP port mapping (UDP cannot be published). */
export function parsePortMapping(text: string): PortMapping {
  if (/\/udp$/.test(text)) throw new IiiError("InvalidOption", `invalid port "${text}": only TCP ports can be published`);
  const match = /^(\d+):(\d+)(?:\/(tcp))?$/.exec(text);
  if (!match) throw new IiiError("InvalidOption", `invalid port "${text}": expected HOST:GUEST (e.g. 8080:80)`);
  return {
    host: parsePort(match[1]!, "host port"),
    guest: parsePort(match[2]!, "guest port"),
    protocol: "tcp",
  };
}

/** Where a guest path mounts: normalized, without a trailing slash (`/app/` and `/app/./` are `/app`). */
export function guestMountTarget(guest: string): string {
  return posix.normalize(guest).replace(/(.)\/+$/, "$1");
}

/** One entry of a spec that cannot hold beside an earlier one of the same spec. */
export interface SpecClash {
  field: "ports" | "mounts";
  /** Index of the later entry in its list. */
  index: number;
  /** The later entry as the user writes it (`8080:81`, `/host:/guest`). */
  given: string;
  /** Why, naming the earlier entry: `host port 8080 is already published (8080:80)`. */
  reason: string;
}

/**
 * Two publishes of one host port, or two shares at one guest path, cannot both hold: the second publish failed
 * only at `start`, after the VM had booted (`cannot publish 127.0.0.1:8080`), and of two shares at one path the
 * guest saw one. The one rule for the state file's decoder and for `add` (which words it as its options).
 */
export function firstSpecClash(spec: Pick<WorkerSpec, "ports" | "mounts">): SpecClash | undefined {
  const ports = new Map<number, string>();
  for (const [index, p] of spec.ports.entries()) {
    const given = `${p.host}:${p.guest}`;
    const seen = ports.get(p.host);
    if (seen !== undefined) return { field: "ports", index, given, reason: `host port ${p.host} is already published (${seen})` };
    ports.set(p.host, given);
  }
  const guests = new Map<string, string>();
  for (const [index, m] of spec.mounts.entries()) {
    const guest = guestMountTarget(m.guest);
    const seen = guests.get(guest);
    if (seen !== undefined) return { field: "mounts", index, given: `${m.host}:${m.guest}`, reason: `guest path ${guest} is already shared (from ${seen})` };
    guests.set(guest, m.host);
  }
  return undefined;
}

/** `HOST:GUEST[:ro|:rw]` → a mount. Both paths must be absolute. */
export function parseMountSpec(text: string): MountSpec {
  const parts = text.split(":");
  let mode: string | undefined;
  if (parts.length === 3) mode = parts.pop();
  if (parts.length !== 2 || (mode !== undefined && mode !== "ro" && mode !== "rw")) {
    throw new IiiError("InvalidOption", `invalid mount "${text}": expected HOST:GUEST[:ro]`);
  }
  const [host, guest] = parts as [string, string];
  if (!host.startsWith("/") || !guest.startsWith("/")) {
    throw new IiiError("InvalidOption", `invalid mount "${text}": both paths must be absolute`);
  }
  if (guest.split("/").includes("..")) {
    throw new IiiError("InvalidOption", `invalid mount "${text}": the guest path may not contain ".."`);
  }
  const target = guestMountTarget(guest);
  const runtimeDir = GUEST_PATHS.runtimeDir;
  if (target === "/" || target === runtimeDir || target.startsWith(`${runtimeDir}/`)) {
    throw new IiiError("InvalidOption", `invalid mount "${text}": the guest path ${target} would hide ${target === "/" ? "the root filesystem" : `${runtimeDir}, where iii keeps the guest's init and configuration`}`);
  }
  return { host, guest, readOnly: mode === "ro" };
}

/** `KEY=VALUE` → [key, value]. */
export function parseEnvAssignment(text: string): [string, string] {
  const eq = text.indexOf("=");
  const key = eq > 0 ? text.slice(0, eq) : "";
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
    throw new IiiError("InvalidOption", `invalid env "${text}": expected KEY=VALUE with a shell-style KEY`);
  }
  return [key, text.slice(eq + 1)];
}

export function emptyNetwork(): NetworkSpec {
  return { allow: [], deny: [], hostPorts: [] };
}

// ---- decoding (from parsed YAML, with field paths in the errors) ----

/** A bad field of iii.workers.yaml; decodeWorkersFile turns it into StateFileCorrupt. */
class FieldError extends Error {
  readonly code = "StateFileCorrupt";
}

function fail(path: string, message: string): never {
  throw new FieldError(`${path}: ${message}`);
}

function asRecord(value: unknown, path: string): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) fail(path, "expected a mapping");
  return value as Record<string, unknown>;
}

/**
 * A YAML number whose text says more than its value: `0755` (755), `1.10` (1.1), `0x1F` (31), a 20-digit id
 * (rounded to a double). workers-file.ts puts one in place of the number, so the decoder can tell, where it expects
 * text, what was written from what YAML made of it. A number written as its value (`8080`, `30`) stays a number.
 */
export class WrittenNumber {
  constructor(
    /** The scalar as written in the file. */
    readonly source: string,
    /** What YAML reads it as. */
    readonly value: number,
  ) {}
}

/**
 * Text: a string, or a number written as its value (`PORT: 8080`). A number YAML reads as something other than
 * its text is refused, not re-stringified: `chmod 0755` ran as `chmod 755`, `VERSION: 1.10` was "1.1". Refused
 * rather than kept as written because every other reader of the file (yq, a script, a linter) reads the number;
 * iii reading the text would make the file mean two things. The fix is one pair of quotes.
 */
function asString(value: unknown, path: string): string {
  if (typeof value === "string") return value;
  if (value instanceof WrittenNumber) fail(path, `${value.source} reads as the number ${value.value}; quote it ("${value.source}") to keep it as written`);
  if (typeof value === "number") return String(value);
  fail(path, "expected a string");
}

/** A field that holds a number or a quantity (`cpus: 0.50`, `pids: 0x100`, a host port): YAML's value is meant. */
function asNumberText(value: unknown, path: string): string {
  return asString(value instanceof WrittenNumber ? value.value : value, path);
}

function asArray(value: unknown, path: string): unknown[] {
  if (!Array.isArray(value)) fail(path, "expected a list");
  return value;
}

/**
 * A key the decoder does not know is refused, not ignored: `netwrok: {mode: none}` ran with the public network,
 * `resource: {memory: 1Gi}` with the default memory. Keys starting with `x-` are the user's own (as in Compose
 * files) and are kept as they are.
 */
function refuseUnknownKeys(record: Record<string, unknown>, known: readonly string[], path: string): void {
  for (const key of Object.keys(record)) {
    if (!known.includes(key) && !key.startsWith("x-")) fail(`${path}.${key}`, `unknown field (known: ${known.join(", ")}; x-… keys are left alone)`);
  }
}

function decodeWorker(raw: unknown, path: string): WorkerSpec {
  const record = asRecord(raw, path);
  refuseUnknownKeys(record, ["image", "command", "env", "resources", "ports", "mounts", "network", "capabilities", "wasm"], path);
  const image = record.image;
  if (typeof image !== "string" || image.length === 0) fail(`${path}.image`, "required, a non-empty string");
  const spec: WorkerSpec = {
    image,
    env: {},
    resources: {},
    ports: [],
    mounts: [],
    network: emptyNetwork(),
  };
  if (record.command != null) spec.command = asArray(record.command, `${path}.command`).map((v, i) => asString(v, `${path}.command[${i}]`));
  if (record.env != null) {
    for (const [key, value] of Object.entries(asRecord(record.env, `${path}.env`))) {
      spec.env[key] = asString(value, `${path}.env.${key}`);
    }
  }
  if (record.resources != null) {
    const resources = asRecord(record.resources, `${path}.resources`);
    refuseUnknownKeys(resources, ["cpus", "memory", "disk", "pids"], `${path}.resources`);
    for (const key of ["cpus", "memory", "disk"] as const) {
      if (resources[key] == null) continue;
      const text = asNumberText(resources[key], `${path}.resources.${key}`);
      try {
        if (key === "cpus") parseCpus(text);
        else if (key === "memory") parseMemoryBytes(text);
        else parseDiskBytes(text);
      } catch (error) {
        fail(`${path}.resources.${key}`, (error as Error).message);
      }
      spec.resources[key] = text;
    }
    if (resources.pids != null) {
      try {
        spec.resources.pids = parsePids(asNumberText(resources.pids, `${path}.resources.pids`));
      } catch (error) {
        fail(`${path}.resources.pids`, (error as Error).message);
      }
    }
  }
  if (record.ports != null) {
    spec.ports = asArray(record.ports, `${path}.ports`).map((value, i) => {
      try {
        return parsePortMapping(asString(value, `${path}.ports[${i}]`));
      } catch (error) {
        fail(`${path}.ports[${i}]`, (error as Error).message);
      }
    });
  }
  if (record.mounts != null) {
    spec.mounts = asArray(record.mounts, `${path}.mounts`).map((value, i) => {
      try {
        return parseMountSpec(asString(value, `${path}.mounts[${i}]`));
      } catch (error) {
        fail(`${path}.mounts[${i}]`, (error as Error).message);
      }
    });
  }
  const clash = firstSpecClash(spec);
  if (clash) fail(`${path}.${clash.field}[${clash.index}]`, clash.reason);
  if (record.network != null) {
    const network = asRecord(record.network, `${path}.network`);
    refuseUnknownKeys(network, ["mode", "allow", "deny", "hostPorts"], `${path}.network`);
    const strings = (key: "allow" | "deny") =>
      network[key] == null ? [] : asArray(network[key], `${path}.network.${key}`).map((v, i) => asString(v, `${path}.network.${key}[${i}]`));
    let mode: NetworkMode | undefined;
    if (network.mode != null) {
      try {
        mode = parseNetworkMode(asString(network.mode, `${path}.network.mode`));
      } catch {
        fail(`${path}.network.mode`, "expected public or none");
      }
    }
    spec.network = {
      ...(mode ? { mode } : {}),
      allow: strings("allow"),
      deny: strings("deny"),
      hostPorts:
        network.hostPorts == null
          ? []
          : asArray(network.hostPorts, `${path}.network.hostPorts`).map((v, i) =>
              parsePort(asNumberText(v, `${path}.network.hostPorts[${i}]`), `${path}.network.hostPorts[${i}]`),
            ),
    };
  }
  if (record.capabilities != null) {
    const caps = asRecord(record.capabilities, `${path}.capabilities`);
    for (const key of Object.keys(caps)) if (key !== "add" && key !== "drop") fail(`${path}.capabilities.${key}`, "unknown field (add or drop)");
    const names = (key: "add" | "drop"): string[] => {
      if (caps[key] == null) return [];
      const texts = asArray(caps[key], `${path}.capabilities.${key}`).map((v, i) => asString(v, `${path}.capabilities.${key}[${i}]`));
      try {
        return parseCapabilityNames(texts, `capability`);
      } catch (error) {
        fail(`${path}.capabilities.${key}`, (error as Error).message);
      }
    };
    spec.capabilities = { add: names("add"), drop: names("drop") };
  }
  if (record.wasm != null) spec.wasm = decodeWasm(record.wasm, `${path}.wasm`);
  const vmOnly = isWasmImage(spec.image) ? wasmInapplicableFields(spec)[0] : undefined;
  if (vmOnly) fail(`${path}.${vmOnly}`, "applies only to a VM worker; a wasm: worker would ignore it (remove it)");
  return spec;
}

/**
 * The fields of a spec that a `wasm:` worker would ignore (they configure a VM): the one rule for `add` (which
 * refuses its options as NotApplicable) and the decoder (a hand-edited entry with `capabilities: {add: [ALL]}` loaded
 * and ran without them). Empty lists and mappings are what encodeWorkersFile writes for every worker, so only a
 * value counts.
 */
export function wasmInapplicableFields(spec: WorkerSpec): string[] {
  const fields: string[] = [];
  if (spec.ports.length > 0) fields.push("ports");
  for (const key of ["cpus", "pids", "disk"] as const) if (spec.resources[key] !== undefined) fields.push(`resources.${key}`);
  if (spec.network.mode !== undefined) fields.push("network.mode");
  for (const key of ["allow", "deny", "hostPorts"] as const) if (spec.network[key].length > 0) fields.push(`network.${key}`);
  if (spec.capabilities && spec.capabilities.add.length + spec.capabilities.drop.length > 0) fields.push("capabilities");
  return fields;
}

function decodeWasm(raw: unknown, path: string): WasmSpec {
  const record = asRecord(raw, path);
  const out: WasmSpec = {};
  for (const key of Object.keys(record)) if (!["source", "maxExecutionMs", "cpuBudgetMs", "network"].includes(key)) fail(`${path}.${key}`, "unknown field");
  if (record.source != null) out.source = asString(record.source, `${path}.source`);
  for (const key of ["maxExecutionMs", "cpuBudgetMs"] as const) {
    if (record[key] == null) continue;
    const n = record[key] instanceof WrittenNumber ? record[key].value : record[key];
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0) fail(`${path}.${key}`, "expected a positive whole number of milliseconds");
    out[key] = n;
  }
  if (record.network != null) {
    const network = asRecord(record.network, `${path}.network`);
    const net: NonNullable<WasmSpec["network"]> = {};
    for (const key of Object.keys(network)) {
      if ((WASM_NET_BOOLEANS as readonly string[]).includes(key)) {
        if (typeof network[key] !== "boolean") fail(`${path}.network.${key}`, "expected true or false");
        net[key as (typeof WASM_NET_BOOLEANS)[number]] = network[key] as boolean;
      } else if ((WASM_NET_LISTS as readonly string[]).includes(key)) {
        net[key as (typeof WASM_NET_LISTS)[number]] = asArray(network[key], `${path}.network.${key}`).map((v, i) => asString(v, `${path}.network.${key}[${i}]`));
      } else fail(`${path}.network.${key}`, "unknown field");
    }
    out.network = net;
  }
  return out;
}

function encodeWasm(wasm: WasmSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (wasm.source !== undefined) out.source = wasm.source;
  if (wasm.maxExecutionMs !== undefined) out.maxExecutionMs = wasm.maxExecutionMs;
  if (wasm.cpuBudgetMs !== undefined) out.cpuBudgetMs = wasm.cpuBudgetMs;
  if (wasm.network) {
    const net: Record<string, unknown> = {};
    for (const key of [...WASM_NET_BOOLEANS, ...WASM_NET_LISTS]) if (wasm.network[key] !== undefined) net[key] = wasm.network[key];
    out.network = net;
  }
  return out;
}

/** Validates a parsed YAML document. Throws a message naming the offending field. */
export function decodeWorkersFile(raw: unknown): WorkersFile {
  try {
    if (raw == null) return { workers: {} };
    const record = asRecord(raw, "(top level)");
    const workers: Record<string, WorkerSpec> = {};
    if (record.workers != null) {
      for (const [name, value] of Object.entries(asRecord(record.workers, "workers"))) {
        try {
          validateWorkerName(name);
        } catch (error) {
          fail(`workers.${name}`, (error as Error).message);
        }
        workers[name] = decodeWorker(value, `workers.${name}`);
      }
    }
    return { workers };
  } catch (error) {
    if (error instanceof FieldError) throw new IiiError("StateFileCorrupt", error.message);
    throw error;
  }
}

/** The on-disk shape, with a stable key order: workers sorted by name, fields in a fixed order. */
export function encodeWorkersFile(file: WorkersFile): unknown {
  const workers: Record<string, unknown> = {};
  for (const name of Object.keys(file.workers).sort()) {
    const spec = file.workers[name]!;
    const out: Record<string, unknown> = { image: spec.image };
    if (spec.command) out.command = spec.command;
    out.env = Object.fromEntries(Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const resources: Record<string, string | number> = {};
    if (spec.resources.cpus !== undefined) resources.cpus = spec.resources.cpus;
    if (spec.resources.memory !== undefined) resources.memory = spec.resources.memory;
    if (spec.resources.disk !== undefined) resources.disk = spec.resources.disk;
    if (spec.resources.pids !== undefined) resources.pids = spec.resources.pids;
    out.resources = resources;
    out.ports = spec.ports.map((p) => `${p.host}:${p.guest}`);
    out.mounts = spec.mounts.map((m) => `${m.host}:${m.guest}${m.readOnly ? ":ro" : ""}`);
    out.network = {
      ...(spec.network.mode ? { mode: spec.network.mode } : {}),
      allow: spec.network.allow,
      deny: spec.network.deny,
      hostPorts: spec.network.hostPorts,
    };
    if (spec.capabilities && spec.capabilities.add.length + spec.capabilities.drop.length > 0) {
      out.capabilities = {
        ...(spec.capabilities.add.length > 0 ? { add: spec.capabilities.add } : {}),
        ...(spec.capabilities.drop.length > 0 ? { drop: spec.capabilities.drop } : {}),
      };
    }
    if (spec.wasm) out.wasm = encodeWasm(spec.wasm);
    workers[name] = out;
  }
  return { workers };
}
