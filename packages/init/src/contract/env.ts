// The guest contract: the III_* variables the host passes to init, with one
// encoder (host) and one decoder (guest) so both sides agree by construction.
// test/fixtures/env-contract.json pins the encoding.

import { ExitCode } from "../errors.js";
import { fromBase64, toBase64, utf8Decode, utf8Encode } from "../portable/bytes.js";
import { CAPABILITY_NAMES, DEFAULT_CAPABILITIES, type CapabilityName } from "./capabilities.js";

export const ENV = {
  CMD: "III_WORKER_CMD",
  WORKDIR: "III_WORKER_WORKDIR",
  USER: "III_WORKER_USER",
  MEM_BYTES: "III_WORKER_MEM_BYTES",
  PIDS_MAX: "III_WORKER_PIDS_MAX",
  CPU_MAX: "III_WORKER_CPU_MAX",
  /** The workload's and execs' capabilities (bounding set): names without CAP_, comma-separated, or "none". */
  CAPS: "III_WORKER_CAPS",
  IP: "III_INIT_IP",
  GW: "III_INIT_GW",
  CIDR: "III_INIT_CIDR",
  DNS: "III_INIT_DNS",
  MTU: "III_INIT_MTU",
  NOFILE: "III_INIT_NOFILE",
  HOSTNAME: "III_INIT_HOSTNAME",
  MOUNTS: "III_MOUNTS",
  /** Path of a JSON object of further variables (e.g. /.iii/env.json), merged over the process env. */
  ENV_FILE: "III_INIT_ENV_FILE",
  /** Base64 of the same JSON object, small enough for the kernel cmdline. */
  ENV_B64: "III_INIT_ENV_B64",
  /** "1": exit with the workload's status instead of rebooting. */
  NO_REBOOT: "III_INIT_NO_REBOOT",
  /** Control transport override: "unix:/path" or a device path; "none" disables it. */
  CONTROL: "III_INIT_CONTROL",
  /** Comma-separated boot steps to skip (namespace tests): network, mounts, hostname, cgroup. */
  SKIP: "III_INIT_SKIP",
} as const;

/** Variables that configure init and never reach the workload (besides every III_INIT_*). */
const CONTRACT_VARS: ReadonlySet<string> = new Set([
  ENV.CMD,
  ENV.WORKDIR,
  ENV.USER,
  ENV.MEM_BYTES,
  ENV.PIDS_MAX,
  ENV.CPU_MAX,
  ENV.CAPS,
  ENV.MOUNTS,
]);

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const DEFAULT_NOFILE = 65536;
export const DEFAULT_MTU = 1500;
export const DEFAULT_PREFIX_LENGTH = 30;
export const SKIPPABLE_STEPS = ["network", "mounts", "hostname", "cgroup"] as const;
export type SkippableStep = (typeof SKIPPABLE_STEPS)[number];

export interface GuestMount {
  /** virtio-fs tag. */
  tag: string;
  /** Absolute guest path. */
  path: string;
  readOnly?: boolean;
}

export interface GuestNetwork {
  ip: string;
  /** Default: first host address of the subnet. */
  gateway?: string;
  /** Default 30. */
  prefixLength?: number;
  /** Default [gateway]. */
  dns?: string[];
  /** Default 1500. */
  mtu?: number;
}

/** What the host wants the guest to run; input of the encoder. */
export interface GuestSpec {
  /** argv (sent as JSON) or a shell command line (run by /bin/sh -c). */
  cmd: string[] | string;
  workdir?: string;
  /** "uid[:gid]" or "name[:group]", resolved in the guest's /etc/passwd and /etc/group. */
  user?: string;
  network?: GuestNetwork;
  memoryBytes?: number;
  pidsMax?: number;
  /** CPU bandwidth limit in CPUs (1.5 → cpu.max "150000 100000"). */
  cpus?: number;
  /** The workload's capabilities, names without CAP_ (contract/capabilities.ts); absent: DEFAULT_CAPABILITIES. */
  capabilities?: readonly string[];
  nofile?: number;
  hostname?: string;
  mounts?: GuestMount[];
  /** The workload's own environment. */
  env?: Record<string, string>;
}

/** What init decoded; output of the decoder. */
export interface GuestConfig {
  argv: string[];
  commandSource: "argv" | "shell";
  workdir: string;
  user: string | null;
  network: Required<GuestNetwork> & { netmask: string } | null;
  memoryBytes: number | null;
  pidsMax: number | null;
  cpuMax: string | null;
  /** What the workload and execs may hold, sorted by number: DEFAULT_CAPABILITIES unless the host named a set. */
  capabilities: CapabilityName[];
  nofile: number;
  hostname: string | null;
  mounts: Array<Required<GuestMount>>;
  /** Environment for the workload: contract and III_INIT_* variables removed, PATH defaulted. */
  workloadEnv: Record<string, string>;
  noReboot: boolean;
  control: string | null;
  skip: SkippableStep[];
}

export class ContractError extends Error {
  readonly code = "BadEnv";
  readonly exitCode = ExitCode.BadEnv;
  constructor(
    readonly variable: string,
    readonly value: string | undefined,
    readonly reason: string,
  ) {
    super(`${variable}${value === undefined ? "" : `=${truncate(value)}`}: ${reason}`);
    this.name = "ContractError";
  }
}

function truncate(value: string): string {
  return value.length > 80 ? `${value.slice(0, 77)}...` : value;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const UINT = /^(0|[1-9]\d*)$/;
const USER_SPEC = /^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$/;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const CPU_MAX = /^(max|[1-9]\d*) [1-9]\d*$/;
const TAG = /^[A-Za-z0-9_.:-]{1,36}$/;

export function ipv4ToNumber(ip: string): number {
  return ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
}

export function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".");
}

export function prefixToNetmask(prefixLength: number): string {
  return numberToIpv4(prefixLength === 0 ? 0 : (0xffffffff - (2 ** (32 - prefixLength) - 1)));
}

function parseUint(variable: string, value: string, min: number, max: number): number {
  if (!UINT.test(value)) throw new ContractError(variable, value, "not a decimal integer");
  const n = Number(value);
  if (n < min || n > max) throw new ContractError(variable, value, `must be between ${min} and ${max}`);
  return n;
}

function parseIp(variable: string, value: string): string {
  if (!IPV4.test(value)) throw new ContractError(variable, value, "not an IPv4 address");
  return value;
}

/** III_WORKER_CAPS: canonical names (no CAP_, upper case), comma-separated, or "none" for the empty set. */
export function parseCapabilities(value: string | undefined): CapabilityName[] {
  if (value === undefined) return [...DEFAULT_CAPABILITIES];
  if (value === "none") return [];
  const names = new Set<string>();
  for (const name of value.split(",")) {
    if (!(CAPABILITY_NAMES as readonly string[]).includes(name)) {
      throw new ContractError(ENV.CAPS, value, `unknown capability "${name}" (names without CAP_, comma-separated, or "none")`);
    }
    names.add(name);
  }
  return CAPABILITY_NAMES.filter((c) => names.has(c));
}

function isAbsoluteClean(path: string): boolean {
  return path.startsWith("/") && !path.includes("\0") && !path.split("/").includes("..");
}

export function parseWorkerCmd(value: string | undefined): { argv: string[]; source: "argv" | "shell" } {
  if (value === undefined || value.trim() === "") {
    throw new ContractError(ENV.CMD, value, "required: the workload command (JSON argv or a shell command line)");
  }
  if (value.trimStart().startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = undefined;
    }
    if (Array.isArray(parsed)) {
      if (parsed.length === 0 || !parsed.every((a) => typeof a === "string") || parsed[0] === "") {
        throw new ContractError(ENV.CMD, value, "a JSON argv must be a non-empty array of strings");
      }
      return { argv: parsed as string[], source: "argv" };
    }
    // Not JSON: a shell line that starts with "[" (e.g. `[ -f x ] && run`).
  }
  return { argv: ["/bin/sh", "-c", value], source: "shell" };
}

export function parseMounts(value: string | undefined): Array<Required<GuestMount>> {
  if (value === undefined || value === "") return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new ContractError(ENV.MOUNTS, value, 'not JSON: must be a JSON array of {"tag","path","readOnly"}');
  }
  if (!Array.isArray(parsed)) {
    throw new ContractError(ENV.MOUNTS, value, 'must be a JSON array of {"tag","path","readOnly"}');
  }
  const seen = new Set<string>();
  return parsed.map((entry, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new ContractError(ENV.MOUNTS, value, `entry ${i} is not an object`);
    }
    const { tag, path, readOnly, ...rest } = entry as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length > 0) throw new ContractError(ENV.MOUNTS, value, `entry ${i} has unknown field "${extra[0]}"`);
    if (typeof tag !== "string" || !TAG.test(tag)) {
      throw new ContractError(ENV.MOUNTS, value, `entry ${i}: "tag" must be 1-36 characters of [A-Za-z0-9_.:-]`);
    }
    if (typeof path !== "string" || !isAbsoluteClean(path) || path === "/") {
      throw new ContractError(ENV.MOUNTS, value, `entry ${i}: "path" must be an absolute path other than / without ".."`);
    }
    if (readOnly !== undefined && typeof readOnly !== "boolean") {
      throw new ContractError(ENV.MOUNTS, value, `entry ${i}: "readOnly" must be a boolean`);
    }
    if (seen.has(path)) throw new ContractError(ENV.MOUNTS, value, `entry ${i}: path ${path} mounted twice`);
    seen.add(path);
    return { tag, path, readOnly: readOnly ?? false };
  });
}

/** Merge the extra variables of III_INIT_ENV_FILE / III_INIT_ENV_B64 (JSON object text) over `base`. */
export function parseEnvObject(variable: string, text: string): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ContractError(variable, undefined, `content is not JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ContractError(variable, undefined, "content must be a JSON object of string values");
  }
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== "string") throw new ContractError(variable, undefined, `value of "${k}" is not a string`);
  }
  return parsed as Record<string, string>;
}

/** Decode and validate the contract. Pure: throws ContractError naming the first bad variable. */
export function decodeGuestEnv(env: Readonly<Record<string, string | undefined>>): GuestConfig {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === "" ? undefined : v;
  };
  const { argv, source } = parseWorkerCmd(env[ENV.CMD]);

  const workdir = get(ENV.WORKDIR) ?? "/";
  if (!isAbsoluteClean(workdir)) throw new ContractError(ENV.WORKDIR, workdir, 'must be an absolute path without ".."');

  const user = get(ENV.USER) ?? null;
  if (user !== null && !USER_SPEC.test(user)) {
    throw new ContractError(ENV.USER, user, 'must be "uid[:gid]" or "name[:group]"');
  }

  let network: GuestConfig["network"] = null;
  const ip = get(ENV.IP);
  const cidr = get(ENV.CIDR);
  const prefixLength = cidr === undefined ? DEFAULT_PREFIX_LENGTH : parseUint(ENV.CIDR, cidr, 0, 32);
  const gwRaw = get(ENV.GW);
  const dnsRaw = get(ENV.DNS);
  const mtuRaw = get(ENV.MTU);
  const mtu = mtuRaw === undefined ? DEFAULT_MTU : parseUint(ENV.MTU, mtuRaw, 68, 65535);
  if (ip !== undefined) {
    parseIp(ENV.IP, ip);
    let gateway: string;
    if (gwRaw !== undefined) gateway = parseIp(ENV.GW, gwRaw);
    else {
      if (prefixLength > 30) throw new ContractError(ENV.GW, undefined, `required when ${ENV.CIDR} is ${prefixLength}`);
      const size = 2 ** (32 - prefixLength);
      gateway = numberToIpv4(Math.floor(ipv4ToNumber(ip) / size) * size + 1);
    }
    const dns = dnsRaw === undefined ? [gateway] : dnsRaw.split(",").map((d) => parseIp(ENV.DNS, d.trim()));
    network = { ip, gateway, prefixLength, netmask: prefixToNetmask(prefixLength), dns, mtu };
  } else if (gwRaw !== undefined) {
    parseIp(ENV.GW, gwRaw);
  }

  const memRaw = get(ENV.MEM_BYTES);
  const memoryBytes = memRaw === undefined ? null : parseUint(ENV.MEM_BYTES, memRaw, 1024 * 1024, Number.MAX_SAFE_INTEGER);
  const pidsRaw = get(ENV.PIDS_MAX);
  const pidsMax = pidsRaw === undefined ? null : parseUint(ENV.PIDS_MAX, pidsRaw, 1, 4194304);
  const cpuMax = get(ENV.CPU_MAX) ?? null;
  if (cpuMax !== null && !CPU_MAX.test(cpuMax)) {
    throw new ContractError(ENV.CPU_MAX, cpuMax, 'must be "<quota> <period>" or "max <period>" in microseconds');
  }
  const capabilities = parseCapabilities(get(ENV.CAPS));
  const nofileRaw = get(ENV.NOFILE);
  const nofile = nofileRaw === undefined ? DEFAULT_NOFILE : parseUint(ENV.NOFILE, nofileRaw, 64, 1048576);
  const hostname = get(ENV.HOSTNAME) ?? null;
  if (hostname !== null && (hostname.length > 64 || !HOSTNAME.test(hostname))) {
    throw new ContractError(ENV.HOSTNAME, hostname, "not a valid hostname (at most 64 characters)");
  }
  const mounts = parseMounts(env[ENV.MOUNTS]);

  const skipRaw = get(ENV.SKIP);
  const skip: SkippableStep[] = [];
  for (const s of skipRaw?.split(",") ?? []) {
    const step = s.trim();
    if (!(SKIPPABLE_STEPS as readonly string[]).includes(step)) {
      throw new ContractError(ENV.SKIP, skipRaw, `unknown step "${step}" (known: ${SKIPPABLE_STEPS.join(", ")})`);
    }
    skip.push(step as SkippableStep);
  }

  const workloadEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || CONTRACT_VARS.has(k) || k.startsWith("III_INIT_")) continue;
    workloadEnv[k] = v;
  }
  workloadEnv.PATH ??= DEFAULT_PATH;

  return {
    argv,
    commandSource: source,
    workdir,
    user,
    network,
    memoryBytes,
    pidsMax,
    cpuMax,
    capabilities,
    nofile,
    hostname,
    mounts,
    workloadEnv,
    noReboot: get(ENV.NO_REBOOT) === "1",
    control: get(ENV.CONTROL) ?? null,
    skip,
  };
}

/**
 * Host side: the variables for a spec, in a stable key order. Throws
 * ContractError if the guest would reject them (the decoder is run on the result).
 */
export function encodeGuestEnv(spec: GuestSpec): Record<string, string> {
  const out: Record<string, string> = {};
  out[ENV.CMD] = typeof spec.cmd === "string" ? spec.cmd : JSON.stringify(spec.cmd);
  if (spec.workdir !== undefined) out[ENV.WORKDIR] = spec.workdir;
  if (spec.user !== undefined) out[ENV.USER] = spec.user;
  if (spec.network) {
    const n = spec.network;
    out[ENV.IP] = n.ip;
    if (n.gateway !== undefined) out[ENV.GW] = n.gateway;
    if (n.prefixLength !== undefined) out[ENV.CIDR] = String(n.prefixLength);
    if (n.dns !== undefined) out[ENV.DNS] = n.dns.join(",");
    if (n.mtu !== undefined) out[ENV.MTU] = String(n.mtu);
  }
  if (spec.memoryBytes !== undefined) out[ENV.MEM_BYTES] = String(spec.memoryBytes);
  if (spec.pidsMax !== undefined) out[ENV.PIDS_MAX] = String(spec.pidsMax);
  if (spec.cpus !== undefined) {
    if (!(spec.cpus > 0)) throw new ContractError(ENV.CPU_MAX, String(spec.cpus), "cpus must be > 0");
    out[ENV.CPU_MAX] = `${Math.max(1000, Math.round(spec.cpus * 100000))} 100000`;
  }
  if (spec.capabilities !== undefined) {
    // Sorted by number; a name the decoder does not know stays in, for the check below to refuse.
    const rest = new Set<string>(spec.capabilities);
    const known: string[] = CAPABILITY_NAMES.filter((c) => rest.delete(c));
    out[ENV.CAPS] = known.length + rest.size === 0 ? "none" : [...known, ...rest].join(",");
  }
  if (spec.nofile !== undefined) out[ENV.NOFILE] = String(spec.nofile);
  if (spec.hostname !== undefined) out[ENV.HOSTNAME] = spec.hostname;
  if (spec.mounts !== undefined && spec.mounts.length > 0) {
    out[ENV.MOUNTS] = JSON.stringify(spec.mounts.map((m) => ({ tag: m.tag, path: m.path, readOnly: m.readOnly ?? false })));
  }
  for (const [k, v] of Object.entries(spec.env ?? {})) {
    if (k in out || k.startsWith("III_INIT_") || CONTRACT_VARS.has(k)) {
      throw new ContractError(k, v, "workload env must not set init contract variables");
    }
    out[k] = v;
  }
  decodeGuestEnv(out);
  return out;
}

/** Host side: content for the injected env file (pass III_INIT_ENV_FILE=<its guest path> on the cmdline). */
export function encodeEnvFile(spec: GuestSpec): string {
  return `${JSON.stringify(encodeGuestEnv(spec), null, 2)}\n`;
}

/** Host side: one kernel cmdline word carrying the whole contract (check its length: x86 cmdline max 2048). */
export function encodeKernelCmdlineEnv(spec: GuestSpec): string {
  return `${ENV.ENV_B64}=${toBase64(utf8Encode(JSON.stringify(encodeGuestEnv(spec))))}`;
}

/**
 * Guest side: combine the process env with III_INIT_ENV_B64 and the file text
 * of III_INIT_ENV_FILE (later sources win). Pure; the caller reads the file.
 */
export function mergeEnvSources(
  processEnv: Readonly<Record<string, string | undefined>>,
  envFileText: string | null,
): Record<string, string | undefined> {
  const merged: Record<string, string | undefined> = { ...processEnv };
  const b64 = processEnv[ENV.ENV_B64];
  if (b64) {
    Object.assign(merged, parseEnvObject(ENV.ENV_B64, decodeUtf8Lenient(fromBase64(b64))));
  }
  if (envFileText !== null) Object.assign(merged, parseEnvObject(ENV.ENV_FILE, envFileText));
  delete merged[ENV.ENV_B64];
  delete merged[ENV.ENV_FILE];
  return merged;
}

/** Like Buffer#toString("utf8"): malformed sequences become U+FFFD instead of throwing. */
function decodeUtf8Lenient(bytes: Uint8Array): string {
  try {
    return utf8Decode(bytes);
  } catch {
    let out = "";
    for (const b of bytes) out += b < 0x80 ? String.fromCharCode(b) : "\ufffd";
    return out;
  }
}
