import { resolveCapabilities } from "@iii/init";
import { IiiError } from "../errors.js";
import { DEFAULT_LAYER_LIMITS } from "../images/layers/policy.js";
import type { MountSpec, PortMapping, WorkerSpec } from "../state/model.js";
import { parseCpus, parseDiskBytes, parseMemoryBytes, vcpusFor } from "../state/quantity.js";

/** vCPUs when the worker names none: 2 with KVM; 1 under TCG (emulated vCPUs share this host's cores). */
export const DEFAULT_VCPUS = { kvm: 2, tcg: 1 } as const;
export const DEFAULT_MEMORY_BYTES = 512 * 2 ** 20;
/**
 * The writable root layer's bound when the worker names none: closed by default, and the same 10 GiB a hostile
 * image's layers get (DEFAULT_LAYER_LIMITS.maxTotalBytes), so neither a pull nor a running guest can fill the host.
 */
export const DEFAULT_DISK_BYTES = DEFAULT_LAYER_LIMITS.maxTotalBytes;
/**
 * pids.max of the guest's workload and execs when the worker names none: room for a build (npm, pip, make -j)
 * and a language runtime's threads, while a fork bomb stops there and init, outside the group, keeps answering.
 */
export const DEFAULT_PIDS_MAX = 1024;

/** What the image contributes to a worker's process (entrypoint, env, user, …). */
export interface ImageProcessConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  user?: string;
  stopSignal?: string;
}

/** Everything the supervisor needs to boot one worker, written to `launch.json` by `start`. */
export interface LaunchSpec {
  name: string;
  image: string;
  /** The read-only lower rootfs (an unpacked image, or a `dir:` source). */
  rootfs: string;
  argv: string[];
  env: Record<string, string>;
  workdir: string;
  user: string;
  vcpus: number;
  /** CPU bandwidth for the guest's workload group, in CPUs (`--cpus 500m` → 0.5); absent: the vCPUs, unthrottled. */
  cpuLimit?: number;
  memoryBytes: number;
  /** Most bytes the writable root layer may hold (`--disk`, default DEFAULT_DISK_BYTES). */
  diskBytes: number;
  pidsMax: number;
  /** The workload's and execs' capabilities when the worker changes the default set (absent: Docker's default). */
  capabilities?: string[];
  mounts: MountSpec[];
  ports: PortMapping[];
  network: { mode: "public" | "none"; allow: string[]; deny: string[]; hostPorts: number[] };
  engineUrl: string;
  /** Discard the writable layer before booting. */
  fresh: boolean;
}

/**
 * What every VM workload and exec is told about its sandbox (iii's SDK reports III_ISOLATION to the engine).
 * The user cannot set these: `add -e` and `exec -e` refuse them, and the launch sets them last.
 */
export const ISOLATION = "microvm";
export const RESERVED_ENV = ["III_ISOLATION", "III_WORKER_NAME"] as const;

export function reservedEnvKeys(env: Record<string, string> | string[]): string[] {
  const keys = Array.isArray(env) ? env : Object.keys(env);
  return keys.filter((k) => (RESERVED_ENV as readonly string[]).includes(k));
}

export function reservedEnvMessage(keys: string[]): string {
  return `${keys.join(", ")} ${keys.length > 1 ? "are" : "is"} set by iii for every worker (III_ISOLATION: its tier, microvm or wasm; III_WORKER_NAME: its name) and cannot be overridden`;
}

const LOOPBACK_URL = /(\b[a-z][a-z0-9+.-]*:\/\/)(?:localhost|127\.0\.0\.1|\[::1\])(?=[:/]|$)/gi;

/** Rewrites `scheme://localhost…` / `127.0.0.1` / `[::1]` URLs so the guest reaches the host through its gateway. */
export function rewriteLoopbackUrls(text: string, gateway: string): string {
  return text.replace(LOOPBACK_URL, (_, scheme: string) => `${scheme}${gateway}`);
}

/** The port an engine URL listens on (default per scheme). */
export function engineUrlPort(url: string): number {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new IiiError("InvalidOption", `invalid engine URL "${url}"`);
  }
  if (parsed.port) return Number(parsed.port);
  return parsed.protocol === "wss:" || parsed.protocol === "https:" ? 443 : 80;
}

export interface BuildLaunchSpecInput {
  name: string;
  spec: WorkerSpec;
  rootfs: string;
  image?: ImageProcessConfig;
  engineUrl: string;
  gateway: string;
  fresh?: boolean;
  accel?: "kvm" | "tcg";
}

/**
 * Merges the worker's spec over its image's config: the worker's command replaces Entrypoint+Cmd, its env
 * wins over the image's, and III_URL / III_ENGINE_URL point at the engine through the gateway.
 */
export function buildLaunchSpec(input: BuildLaunchSpecInput): LaunchSpec {
  const { spec, image = {} } = input;
  const argv = spec.command?.length ? spec.command : [...(image.entrypoint ?? []), ...(image.cmd ?? [])];
  if (argv.length === 0) {
    throw new IiiError(
      "InvalidOption",
      `worker "${input.name}" has no command: its image defines no Entrypoint/Cmd; give one after -- in "iii worker add"`,
    );
  }
  const env: Record<string, string> = { ...(image.env ?? {}), ...spec.env };
  env.III_URL = input.engineUrl;
  env.III_ENGINE_URL = input.engineUrl;
  const rewritten = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, rewriteLoopbackUrls(v, input.gateway)]));
  // Last, over the image's and a hand-edited spec's env.
  rewritten.III_ISOLATION = ISOLATION;
  rewritten.III_WORKER_NAME = input.name;
  const engineUrl = rewriteLoopbackUrls(input.engineUrl, input.gateway);
  const engineIsLocal = engineUrl !== input.engineUrl;
  const hostPorts = new Set(spec.network.hostPorts);
  if (engineIsLocal) hostPorts.add(engineUrlPort(input.engineUrl));
  return {
    name: input.name,
    image: spec.image,
    rootfs: input.rootfs,
    argv: argv.map((a) => rewriteLoopbackUrls(a, input.gateway)),
    env: rewritten,
    workdir: image.workingDir || "/",
    user: image.user || "0:0",
    vcpus: spec.resources.cpus ? vcpusFor(parseCpus(spec.resources.cpus)) : DEFAULT_VCPUS[input.accel ?? "tcg"],
    ...(spec.resources.cpus ? { cpuLimit: parseCpus(spec.resources.cpus) } : {}),
    memoryBytes: spec.resources.memory ? parseMemoryBytes(spec.resources.memory) : DEFAULT_MEMORY_BYTES,
    diskBytes: spec.resources.disk ? parseDiskBytes(spec.resources.disk) : DEFAULT_DISK_BYTES,
    pidsMax: spec.resources.pids ?? DEFAULT_PIDS_MAX,
    ...(spec.capabilities ? { capabilities: resolveCapabilities(spec.capabilities.add, spec.capabilities.drop) } : {}),
    mounts: spec.mounts,
    ports: spec.ports,
    network: { mode: spec.network.mode ?? "public", allow: spec.network.allow, deny: spec.network.deny, hostPorts: [...hostPorts].sort((a, b) => a - b) },
    engineUrl,
    fresh: input.fresh ?? false,
  };
}
