import { readFile, stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { detectWasmKind } from "./wasm/kind.js";
import { IiiError } from "./errors.js";
import type { PullPolicy } from "./images/index.js";
import { iiiHome, workersFilePath } from "./paths.js";
import { DEFAULT_REGISTRY_INDEX_URL, resolveShortName } from "./catalog/index-lookup.js";
import { formatImageReference, isLocalSource, parseImageReference, workerNameFor } from "./images/oci/reference.js";
import {
  firstSpecClash,
  parseCapabilityOptions,
  parseEnvAssignment,
  parseMountSpec,
  parseNetworkMode,
  parsePids,
  parsePortMapping,
  isWasmImage,
  wasmInapplicableFields,
  validateWorkerName,
  type WasmSpec,
  type WorkerSpec,
  type WorkersFile,
} from "./state/model.js";
import { parseCpus, parseDiskBytes, parseMemoryBytes } from "./state/quantity.js";
import { policyRules } from "./launch/policy-rules.js";
import { reservedEnvKeys, reservedEnvMessage } from "./launch/spec.js";
import { loadWorkersFile, updateWorkersFile } from "./state/workers-file.js";
import { DEFAULT_CAPABILITIES, resolveCapabilities } from "@iii/init";

/** The least memory a VM boots with (vmm/qemu-argv.ts); parseMemoryBytes allows 16Mi for WASM workers. */
const VM_MIN_MEMORY_BYTES = 64 * 2 ** 20;

export interface AddWorkerOptions {
  name?: string;
  cpus?: string;
  memory?: string;
  /** Most bytes of the writable root layer, a quantity (default 10Gi). */
  disk?: string;
  pids?: string;
  /** Capabilities added to / dropped from the workload's default set (names without CAP_, or ALL). */
  capAdd?: string[];
  capDrop?: string[];
  /** `public` (default) or `none`. */
  network?: string;
  env?: string[];
  ports?: string[];
  mounts?: string[];
  command?: string[];
  allow?: string[];
  deny?: string[];
  hostPorts?: string[];
  /** When to ask the registry while adding (the image is pulled and unpacked before anything is recorded). */
  pull?: PullPolicy;
  insecureRegistries?: string[];
  /** Pull/unpack the image (default true); false only records the reference. */
  fetchImage?: boolean;
  /** Replace an existing worker of the same name. */
  force?: boolean;
  /** WASM workers only: limits and network switches beyond --memory. */
  wasm?: WasmSpec;
  cwd?: string;
  env_?: NodeJS.ProcessEnv;
}

export interface AddedWorker {
  name: string;
  spec: WorkerSpec;
  replaced: boolean;
  /** What the image is (manifest, size, entrypoint), for the user. */
  summary: string[];
  /** How the input was read: an iii short name (through the registry index), a Docker Hub or other registry image, a local source. */
  origin: string;
}

/** Turns what the user typed into the image string recorded in the state file, and a default name. */
export async function resolveImageInput(
  input: string,
  cwd: string,
  env: NodeJS.ProcessEnv,
  options: { offline?: boolean } = {},
): Promise<{ image: string; defaultName: string; origin: string }> {
  if (input.startsWith("wasm:") || (/\.wasm$/i.test(input) && !input.includes("://") && (input.startsWith(".") || input.startsWith("/") || !input.includes(":")))) {
    const path = resolve(cwd, input.startsWith("wasm:") ? input.slice("wasm:".length) : input);
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (error) {
      throw new IiiError("WasmInvalid", `wasm: cannot read ${path}: ${(error as Error).message}`);
    }
    detectWasmKind(bytes, path);
    const base = basename(path).replace(/\.wasm$/i, "");
    return { image: `wasm:${path}`, defaultName: base.toLowerCase().replace(/[^a-z0-9._-]/g, "-").replace(/^[^a-z0-9]+/, "") || "wasm", origin: `WASM file ${path}` };
  }
  if (isLocalSource(input)) {
    const colon = input.indexOf(":");
    const kind = input.slice(0, colon);
    const path = input.slice(colon + 1);
    if (!path) throw new IiiError("InvalidReference", `invalid image "${input}": ${kind}: needs a path`);
    let reference = "";
    let sourcePath = path;
    // oci:<dir>:<tag> / oci-archive:<tar>:<tag> name one image of a layout
    const tagged = /^(.*):([\w][\w.-]{0,127})$/.exec(path);
    if ((kind === "oci" || kind === "oci-archive") && tagged && !(await stat(resolve(cwd, path)).catch(() => undefined))) {
      sourcePath = tagged[1]!;
      reference = `:${tagged[2]}`;
    }
    const absolute = resolve(cwd, sourcePath);
    let isDir: boolean;
    try {
      isDir = (await stat(absolute)).isDirectory();
    } catch {
      throw new IiiError("RootfsNotFound", `${kind}: source ${absolute} does not exist`);
    }
    const wantsDir = kind === "dir" || kind === "oci";
    if (isDir !== wantsDir) {
      throw new IiiError("InvalidReference", `${kind}: source ${absolute} must be a ${wantsDir ? "directory" : "tar file"}`);
    }
    const image = `${kind}:${absolute}${reference}`;
    return { image, defaultName: workerNameFor(image), origin: `local ${kind}: source ${absolute}` };
  }
  // A bare word (`alpine`, `image-resize@1.2`) is an iii short name; anything with a ':' or '/' is an image
  // reference, and one without a registry host is Docker Hub's (`node:22` → docker.io/library/node:22).
  if (input.includes("/") || input.includes(":")) {
    const ref = parseImageReference(input);
    const origin = input.startsWith(`${ref.registry}/`) ? `image on registry ${ref.registry}` : `Docker Hub image ${formatImageReference(ref)}`;
    return { image: input, defaultName: workerNameFor(input), origin };
  }
  // `add ""`, `add "my app"`: not a name any index holds; said before the index is fetched (it was fetched, or
  // with --no-pull the advice offered "docker.io/library/:latest").
  if (!/^[A-Za-z0-9][\w.-]*(@[^@]*)?$/.test(input)) {
    throw new IiiError(
      "InvalidReference",
      `invalid image "${input}": expected an image reference (alpine:3.20, ghcr.io/acme/api:1), an iii short name (image-resize, image-resize@0.2.0) or a local source (dir:/path, oci:/path)`,
    );
  }
  const url = env.III_REGISTRY_URL || DEFAULT_REGISTRY_INDEX_URL;
  if (options.offline && !url.startsWith("file://")) {
    throw new IiiError(
      "RegistryLookupFailed",
      `"${input}" is an iii short name, which needs the registry index at ${url}, and --no-pull never goes online: give a full image reference (e.g. docker.io/library/${input.split("@")[0]}:latest for Docker Hub's) or drop --no-pull`,
    );
  }
  const resolved = await resolveShortName(input, env);
  parseImageReference(resolved.image);
  return { image: resolved.image, defaultName: resolved.name, origin: `iii short name, resolved through ${url} to ${resolved.image}` };
}

/**
 * A host port another worker of the project already publishes: the two can never run together (the second start
 * fails after its VM has booted, and `start-all` always does). Refused at `add`, naming the other worker; a
 * hand-edited file may still list alternates that are started one at a time, so the decoder allows it.
 */
function refusePortOfAnotherWorker(file: WorkersFile, name: string, spec: WorkerSpec): void {
  for (const [other, otherSpec] of Object.entries(file.workers)) {
    if (other === name) continue;
    for (const p of spec.ports) {
      const theirs = otherSpec.ports.find((q) => q.host === p.host);
      if (theirs) {
        throw new IiiError(
          "InvalidOption",
          `invalid --port ${p.host}:${p.guest}: host port ${p.host} is already published by worker "${other}" (${theirs.host}:${theirs.guest}); the two could not run together`,
        );
      }
    }
  }
}

/** Validates every option before touching the state file, so bad input changes nothing. */
export async function addWorker(input: string, options: AddWorkerOptions = {}): Promise<AddedWorker> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env_ ?? process.env;
  // Every option is checked before the image is looked at: bad input fails before any network access.
  if (options.name !== undefined) validateWorkerName(options.name);
  const spec: WorkerSpec = {
    image: "",
    env: Object.fromEntries((options.env ?? []).map(parseEnvAssignment)),
    resources: {},
    ports: (options.ports ?? []).map(parsePortMapping),
    mounts: (options.mounts ?? []).map(parseMountSpec).map((m) => ({ ...m, host: resolve(cwd, m.host) })),
    network: {
      ...(options.network !== undefined ? { mode: parseNetworkMode(options.network) } : {}),
      allow: options.allow ?? [],
      deny: options.deny ?? [],
      hostPorts: (options.hostPorts ?? []).map((p) => parsePortMapping(`${p}:${p}`).host),
    },
  };
  policyRules(spec.network);
  const clash = firstSpecClash(spec);
  if (clash) throw new IiiError("InvalidOption", `invalid --${clash.field === "ports" ? "port" : "mount"} ${clash.given}: ${clash.reason}`);
  const reserved = reservedEnvKeys(spec.env);
  if (reserved.length > 0) throw new IiiError("InvalidOption", `invalid --env: ${reservedEnvMessage(reserved)}`);
  if (options.cpus !== undefined) {
    parseCpus(options.cpus);
    spec.resources.cpus = options.cpus;
  }
  if (options.pids !== undefined) spec.resources.pids = parsePids(options.pids);
  const capabilities = parseCapabilityOptions(options.capAdd, options.capDrop);
  if (capabilities) spec.capabilities = capabilities;
  let memoryBytes: number | undefined;
  if (options.memory !== undefined) {
    // bounded there: `--memory 99999999Ti` was recorded and then failed each start naming an internal variable
    memoryBytes = parseMemoryBytes(options.memory);
    spec.resources.memory = options.memory;
  }
  if (options.disk !== undefined) {
    parseDiskBytes(options.disk);
    spec.resources.disk = options.disk;
  }
  if (options.command && options.command.length > 0) spec.command = options.command;
  const { image, defaultName, origin } = await resolveImageInput(input, cwd, env, { offline: options.fetchImage === false || options.pull === "never" });
  const name = validateWorkerName(options.name ?? defaultName);
  spec.image = image;
  // before the image is pulled; again below under the file's lock
  if (spec.ports.length > 0) refusePortOfAnotherWorker(await loadWorkersFile(workersFilePath(cwd)), name, spec);
  let summary: string[] = [];
  let wasmSource: string | undefined;
  if (!isWasmImage(image)) {
    // A registry reference may name a WASM artifact (one wasm layer) instead of a container image. --no-pull
    // only looks in the cache.
    const { pullWasmArtifact } = await import("./images/wasm-artifact.js");
    const pull = options.fetchImage === false ? "never" : (options.pull ?? "missing");
    const artifact = await pullWasmArtifact(image, { home: iiiHome(env), env, pull, insecureRegistries: options.insecureRegistries ?? [] });
    if (artifact) {
      spec.image = `wasm:${artifact.path}`;
      wasmSource = `${artifact.reference}@${artifact.digest}`;
    }
  }
  if (!isWasmImage(spec.image) && memoryBytes !== undefined && memoryBytes < VM_MIN_MEMORY_BYTES) {
    throw new IiiError("InvalidQuantity", `invalid memory "${options.memory}": a VM worker needs at least 64Mi (16Mi is a WASM worker's least)`);
  }
  if (isWasmImage(spec.image)) {
    const image = spec.image;
    if (wasmInapplicableFields(spec).length > 0) {
      throw new IiiError("NotApplicable", "--port, --cpus, --pids, --disk, --network, --allow, --deny, --host-port, --cap-add and --cap-drop do not apply to a WASM worker (use --max-execution, --cpu-budget and --wasm-* network options)");
    }
    for (const m of spec.mounts) {
      if (!(await stat(m.host).catch(() => undefined))?.isDirectory()) throw new IiiError("InvalidOption", `mount ${m.host}: a WASM worker's dir must be an existing directory`);
    }
    if (options.wasm && Object.keys(options.wasm).length > 0) spec.wasm = { ...options.wasm };
    if (wasmSource) spec.wasm = { ...spec.wasm, source: wasmSource };
    summary = [
      `WASM ${detectWasmKind(await readFile(image.slice(5)), image.slice(5)) === "module" ? "core module (WASI preview 1)" : "component (WASI preview 2)"}${wasmSource ? ` from the OCI artifact ${wasmSource}` : ""}`,
    ];
  } else if (options.fetchImage !== false && !image.startsWith("dir:")) {
    const { ensureImage, formatImageSummary } = await import("./images/index.js");
    const ensured = await ensureImage(image, {
      home: iiiHome(env),
      pull: options.pull ?? "missing",
      insecureRegistries: options.insecureRegistries ?? [],
      progress: process.stderr.isTTY === true,
      env,
    });
    summary = formatImageSummary(ensured, spec.command);
  } else if (spec.command) {
    summary = [`runs ${JSON.stringify(spec.command)} (the command given after --)`];
  }
  if (spec.capabilities) summary.push(capabilitiesSummary(spec.capabilities));
  // Refused now rather than at every start: the guest could rewrite its own entry through such a share.
  const { assertProjectFileNotShared } = await import("./launch/share-safety.js");
  const { assertNoDirSharedWithPreview1 } = await import("./launch/cross-tier.js");
  assertProjectFileNotShared(spec.mounts, workersFilePath(cwd));
  const replaced = await updateWorkersFile(workersFilePath(cwd), (file) => {
    const exists = Object.hasOwn(file.workers, name);
    if (exists && !options.force) {
      throw new IiiError("WorkerExists", `worker "${name}" already exists in iii.workers.yaml (use --force to replace it)`);
    }
    refusePortOfAnotherWorker(file, name, spec);
    assertNoDirSharedWithPreview1(name, spec, file.workers, cwd);
    file.workers[name] = spec;
    return exists;
  });
  return { name, spec, replaced, summary, origin };
}

/** One line for `add`: what root in the workload may do beyond (or short of) Docker's default set. */
export function capabilitiesSummary(caps: { add: string[]; drop: string[] }): string {
  const kept = resolveCapabilities(caps.add, caps.drop);
  const added = kept.filter((c) => !DEFAULT_CAPABILITIES.includes(c));
  const dropped = DEFAULT_CAPABILITIES.filter((c) => !kept.includes(c));
  const parts = [...added.map((c) => `+${c}`), ...dropped.map((c) => `-${c}`)];
  // These undo init's confinement inside the guest (remounts, /dev/mem, PID 1's view): the in-guest pids and CPU
  // limits become the workload's to lift. The host's own bounds (QEMU's CPU quota and memory) still hold.
  const unconfined = added.filter((c) => ["SYS_ADMIN", "SYS_RAWIO", "SYS_PTRACE", "SYS_MODULE", "DAC_READ_SEARCH"].includes(c));
  const where = added.length === 0 ? "" : unconfined.length > 0
    ? ` (inside its VM only; with ${unconfined.join(", ")} the workload can lift its in-guest limits: --pids and the guest's cpu.max; the host's CPU quota and the VM's memory still hold)`
    : " (inside its VM only: they reach the guest kernel, not the host)";
  return `workload capabilities: Docker's default set${parts.length > 0 ? ` ${parts.join(" ")}` : " (unchanged)"}${where}`;
}

export async function removeWorker(name: string, cwd: string = process.cwd()): Promise<WorkerSpec> {
  return updateWorkersFile(workersFilePath(cwd), (file) => {
    const spec = Object.hasOwn(file.workers, name) ? file.workers[name] : undefined;
    if (!spec) throw new IiiError("WorkerNotFound", `no worker named "${name}" in iii.workers.yaml`);
    delete file.workers[name];
    return spec;
  });
}

export async function getWorker(name: string, cwd: string = process.cwd()): Promise<WorkerSpec> {
  const file = await loadWorkersFile(workersFilePath(cwd));
  const spec = Object.hasOwn(file.workers, name) ? file.workers[name] : undefined;
  if (!spec) throw new IiiError("WorkerNotFound", `no worker named "${name}" in iii.workers.yaml`);
  return spec;
}
