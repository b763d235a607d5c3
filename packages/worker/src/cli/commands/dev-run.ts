import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, readFile, readlink, rename, stat, unlink, writeFile, type FileHandle } from "node:fs/promises";
import { createRequire } from "node:module";
import { totalmem } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SupervisorClient } from "../../api/client.js";
import { detectProject, devScript, installState, watchProject, DEV_CACHE_DIR, MANIFEST_FILE, VENV_DIR, type DevProject, type DevResources } from "../../dev/index.js";
import { errnoCode, IiiError } from "../../errors.js";
import { awaitEndedSupervisor, prepareWorkerDir, startWorkerWithSpec, stopWorker } from "../../lifecycle.js";
import { followFile } from "../../logs.js";
import { iiiHome, workerPaths, type WorkerPaths } from "../../paths.js";
import { emptyNetwork, parseCapabilityOptions, parsePort, validateWorkerName, type MountSpec, type WorkerSpec } from "../../state/model.js";
import { workerStatus } from "../../status.js";
import { terminalSafeLine } from "../../util/terminal-safe.js";
import { capabilitiesSummary } from "../../workers.js";

export interface DevOptions {
  name?: string;
  rebuild?: boolean;
  engineUrl: string;
  env?: NodeJS.ProcessEnv;
  /** `--capture FILE`: a pcap of the sandbox's traffic. */
  capture?: string;
  /** `--host-port PORT`: host loopback ports the guest may reach through its gateway (a local registry mirror). */
  hostPorts?: string[];
  /** `--cap-add` / `--cap-drop`: the workload's capabilities against Docker's default set, as `add`'s. */
  capAdd?: string[];
  capDrop?: string[];
  /** `--accept-resources`: take iii.worker.yaml's resources even when they are more than the last dev run's. */
  acceptResources?: boolean;
}

/**
 * The dev base image build script shipped in this package (`images/build.sh`; the repository's root
 * `images/build.sh` runs the same file).
 */
export function baseImageBuildScript(): string {
  return join(dirname(createRequire(import.meta.url).resolve("@iii/worker/package.json")), "images", "build.sh");
}

/** Dev base images by language: `III_DEV_IMAGE_NODE` / `III_DEV_IMAGE_PYTHON` (e.g. `oci:<layout>:latest` from images/build.sh). */
export function devBaseImage(project: DevProject, env: NodeJS.ProcessEnv): string {
  const variable = project.baseImage === "node" ? "III_DEV_IMAGE_NODE" : "III_DEV_IMAGE_PYTHON";
  const image = env[variable];
  if (!image) {
    throw new IiiError(
      "ImageInvalid",
      `no ${project.baseImage} dev base image: set ${variable} (build one as root: ${variable}=oci:$(${baseImageBuildScript()} ${project.baseImage}):latest)`,
    );
  }
  return image;
}

function sandboxName(project: DevProject): string {
  const slug = project.name.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+/, "").slice(0, 50);
  return `iii-dev-${slug || basename(project.dir).toLowerCase()}`;
}

const HOST_CA_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/**
 * Installs in the guest fetch packages over TLS; a host behind a TLS-inspecting proxy trusts a CA the base
 * image does not know. Dev mode therefore hands the guest the host's CA bundle (III_DEV_HOST_CA=0 opts out).
 */
async function shareHostCaBundle(cacheDir: DevCacheDir, env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  if (env.III_DEV_HOST_CA === "0") return {};
  for (const bundle of HOST_CA_BUNDLES) {
    let data: Buffer;
    try {
      data = await readFile(bundle);
    } catch {
      continue;
    }
    await cacheDir.writeFile("host-ca.pem", data, 0o644);
    const guestPath = `/workspace/${DEV_CACHE_DIR}/host-ca.pem`;
    return { NODE_EXTRA_CA_CERTS: guestPath, SSL_CERT_FILE: guestPath, PIP_CERT: guestPath };
  }
  return {};
}

const DIRECTORY_NOFOLLOW = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const NEW_FILE_NOFOLLOW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * `<project>/.iii/dev`, which the host writes and the dev guest can write too (the project is its /workspace):
 * a link the guest left at `.iii`, `.iii/dev`, `run.sh` or `host-ca.pem` must never send the host's writes
 * elsewhere (`.iii/dev -> /etc/profile.d`, `run.sh -> ~/.ssh/authorized_keys`).
 * - `.iii` and `.iii/dev` are each created if missing and opened O_DIRECTORY|O_NOFOLLOW (lstat's check, made
 *   by the open itself); a link or a non-directory there is refused, naming the path. Refused rather than
 *   replaced: nothing but a guest (or the user) puts a link there, so it is worth one line on the user's
 *   screen, and the fix (`rm` it) is theirs to make; removing it silently would hide the attempt.
 * - Everything after goes through /proc/self/fd/<fd> of the opened directory, so a link swapped in after the
 *   check is not followed either.
 * - A file is written to a fresh name (O_CREAT|O_EXCL|O_NOFOLLOW) and renamed over its final name: rename
 *   replaces a link at that name instead of following it.
 */
class DevCacheDir {
  private constructor(
    /** `<project>/.iii/dev`, for messages. */
    readonly path: string,
    private readonly handles: FileHandle[],
  ) {}

  static async open(projectDir: string): Promise<DevCacheDir> {
    const handles: FileHandle[] = [];
    try {
      let shown = projectDir;
      for (const name of DEV_CACHE_DIR.split("/")) {
        shown = join(shown, name);
        const at = handles.length === 0 ? shown : procPath(handles.at(-1)!, name);
        handles.push(await openDirectoryNoFollow(at, shown));
      }
      return new DevCacheDir(join(projectDir, DEV_CACHE_DIR), handles);
    } catch (error) {
      await Promise.all(handles.map((h) => h.close()));
      throw error;
    }
  }

  /** Writes `name` in the directory: a fresh file renamed over it, never through a link at that name. */
  async writeFile(name: string, data: string | Uint8Array, mode: number): Promise<void> {
    const dir = this.handles.at(-1)!;
    const temp = procPath(dir, `.${name}.${randomBytes(6).toString("hex")}.tmp`);
    const handle = await open(temp, NEW_FILE_NOFOLLOW, mode);
    try {
      try {
        await handle.writeFile(data);
        await handle.chmod(mode);
      } finally {
        await handle.close();
      }
      await rename(temp, procPath(dir, name));
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw new IiiError("StateFileUnwritable", `cannot write ${join(this.path, name)}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Removes `name` (a link itself, never its target); absent is fine. */
  async remove(name: string): Promise<void> {
    await unlink(procPath(this.handles.at(-1)!, name)).catch((error: unknown) => {
      if (errnoCode(error) !== "ENOENT") throw new IiiError("StateFileUnwritable", `cannot remove ${join(this.path, name)}: ${(error as Error).message}`, { cause: error });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.close()));
  }
}

function procPath(dir: FileHandle, name: string): string {
  return `/proc/self/fd/${dir.fd}/${name}`;
}

/** Creates `at` if missing and opens it as a directory without following a link there; `shown` names it to the user. */
async function openDirectoryNoFollow(at: string, shown: string): Promise<FileHandle> {
  await mkdir(at, 0o755).catch((error: unknown) => {
    if (errnoCode(error) !== "EEXIST") throw new IiiError("StateFileUnwritable", `cannot create ${shown}: ${(error as Error).message}`, { cause: error });
  });
  try {
    return await open(at, DIRECTORY_NOFOLLOW);
  } catch (error) {
    const info = await lstat(at).catch(() => undefined);
    if (info?.isSymbolicLink()) {
      const target = await readlink(at).catch(() => "?");
      throw new IiiError(
        "InvalidOption",
        `${shown} is a symbolic link (to ${target}); iii worker dev never follows a link in the project the dev VM writes: remove it and run again`,
        { cause: error },
      );
    }
    if (info && !info.isDirectory()) {
      throw new IiiError("InvalidOption", `${shown} is not a directory; iii worker dev keeps its files there: remove it and run again`, { cause: error });
    }
    throw new IiiError("StateFileUnwritable", `cannot open ${shown}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Writes `<project>/.iii/dev`'s run.sh and host-ca.pem (and drops install.key for `--rebuild`) without following
 * a link the dev guest planted; returns the CA bundle's env for the guest.
 */
export async function prepareDevCache(project: DevProject, env: NodeJS.ProcessEnv, rebuild = false): Promise<Record<string, string>> {
  const cacheDir = await DevCacheDir.open(project.dir);
  try {
    if (rebuild) await cacheDir.remove("install.key");
    await cacheDir.writeFile("run.sh", devScript(project), 0o755);
    return await shareHostCaBundle(cacheDir, env);
  } finally {
    await cacheDir.close();
  }
}

/**
 * The project's dependency directory (node_modules, .venv) as a second share over the live one, cached by the
 * guest until it changes it itself. Module loading is thousands of stats and small reads; through the
 * live share each one asks the host again after a second and re-reads the file on every open, which made a
 * restarted iii-sdk worker spend seconds in the filesystem under TCG. The guest's install is what writes
 * this directory (the watcher ignores it), so its cache stays right; a host-side change to it while the VM
 * runs may go unseen until the next `iii worker dev`. Skipped when the directory is a symlink or a file.
 */
async function dependencyMount(project: DevProject): Promise<MountSpec[]> {
  const name = project.language === "python" ? VENV_DIR : "node_modules";
  const host = join(project.dir, name);
  const existing = await lstat(host).catch(() => undefined);
  if (existing && !existing.isDirectory()) return [];
  if (!existing) await mkdir(host);
  return [{ host, guest: `/workspace/${name}`, readOnly: false, cache: "always" }];
}

async function sizeOf(path: string): Promise<number> {
  return stat(path).then((s) => s.size, () => 0);
}

/**
 * `iii worker dev <path>`: boots the project's language base image with the project live-mounted at
 * /workspace, runs install (once, cached) and the start script with its output on this terminal, restarts
 * only the workload when sources change, and stops the VM on Ctrl-C (exit 130).
 */
/**
 * Dev mode installs the project's dependencies in the guest, so its package registries are allowed by name
 * (HTTPS only). A domain rule binds only the addresses the guest resolved for that name, and ranks above a
 * builtin range (a /32 against its prefix), so this also works where the registry is a mirror in a private
 * or documentation range; it never opens this host's own addresses or loopback (pinned builtins).
 */
export function packageRegistryRules(project: Pick<DevProject, "language">): string[] {
  return project.language === "python"
    ? ["tcp/pypi.org:443", "tcp/files.pythonhosted.org:443"]
    : ["tcp/registry.npmjs.org:443", "tcp/registry.yarnpkg.com:443"];
}

/**
 * The resources the last dev run of a project was started with: host state (managed/<project key>/, out of the
 * guest's reach), per project rather than per sandbox, since the sandbox's default name comes from the manifest
 * the guest writes too. A dot name: never a worker's (names start with [a-z0-9]).
 */
const RESOURCES_RECORD = ".dev-resources.json";

function showBytes(bytes: number): string {
  if (bytes % 2 ** 30 === 0) return `${bytes / 2 ** 30}Gi`;
  if (bytes % 2 ** 20 === 0) return `${bytes / 2 ** 20}Mi`;
  return String(bytes);
}

/** Each resource `next` asks for above `previous` (a value where there was the default counts), as `memory 512Mi -> 16Gi`. */
export function resourceRaises(previous: DevResources, next: DevResources): string[] {
  const fields = [
    ["cpus", "cpus", String],
    ["memoryBytes", "memory", showBytes],
    ["diskBytes", "disk", showBytes],
  ] as const;
  const raises: string[] = [];
  for (const [key, label, show] of fields) {
    const now = next[key];
    const before = previous[key];
    if (now !== undefined && (before === undefined || now > before)) raises.push(`${label} ${before === undefined ? "default" : show(before)} -> ${show(now)}`);
  }
  return raises;
}

async function readResourcesRecord(path: string): Promise<DevResources | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
    const record: DevResources = {};
    for (const key of ["cpus", "memoryBytes", "diskBytes"] as const) if (typeof parsed[key] === "number") record[key] = parsed[key];
    return record;
  } catch {
    return undefined;
  }
}

/**
 * iii.worker.yaml is in the project, which the dev guest writes: its `resources` at the next `iii worker dev` are
 * whatever the guest left there (memory has no upper bound in the parser). A dev run therefore keeps the resources
 * it started with beside the sandbox's state, and the next run refuses more than that, in one line naming each
 * raise, until the user passes --accept-resources. Lowering them and the project's first run are not asked about
 * (the user reads the manifest of what they chose to run). Memory above the host's is refused always.
 */
async function checkResources(project: DevProject, paths: WorkerPaths, env: NodeJS.ProcessEnv, accept: boolean): Promise<void> {
  const memory = project.resources.memoryBytes;
  if (memory !== undefined && memory > totalmem()) {
    throw new IiiError("InvalidQuantity", `${join(project.dir, MANIFEST_FILE)}: resources.memory ${showBytes(memory)} is more than this host has (${showBytes(totalmem())})`);
  }
  const record = join(dirname(paths.dir), RESOURCES_RECORD);
  const previous = await readResourcesRecord(record);
  const raises = previous === undefined ? [] : resourceRaises(previous, project.resources);
  if (raises.length > 0 && !accept) {
    throw new IiiError(
      "InvalidOption",
      `${join(project.dir, MANIFEST_FILE)} asks for more than the last dev run of this project (${raises.join(", ")}); the dev VM can write that file: check it, and if the change is yours run again with --accept-resources`,
    );
  }
  await prepareWorkerDir(paths, iiiHome(env), env);
  await writeFile(record, `${JSON.stringify(project.resources)}\n`, { mode: 0o600 });
}

export async function runDev(path: string, options: DevOptions): Promise<number> {
  const env = options.env ?? process.env;
  const hostPorts = (options.hostPorts ?? []).map((p) => parsePort(p, "--host-port"));
  const capabilities = parseCapabilityOptions(options.capAdd, options.capDrop);
  const project = await detectProject(resolve(path));
  const name = validateWorkerName(options.name ?? sandboxName(project));
  const image = devBaseImage(project, env);
  const paths = workerPaths(name, env, project.dir);
  await checkResources(project, paths, env, options.acceptResources ?? false);
  const caEnv = await prepareDevCache(project, env, options.rebuild);
  const spec: WorkerSpec = {
    image,
    command: ["bash", `/workspace/${DEV_CACHE_DIR}/run.sh`],
    env: { ...caEnv, ...project.env },
    resources: {
      ...(project.resources.cpus !== undefined ? { cpus: String(project.resources.cpus) } : {}),
      ...(project.resources.memoryBytes !== undefined ? { memory: String(project.resources.memoryBytes) } : {}),
      ...(project.resources.diskBytes !== undefined ? { disk: String(project.resources.diskBytes) } : {}),
    },
    ports: [],
    mounts: [{ host: project.dir, guest: "/workspace", readOnly: false }, ...(await dependencyMount(project))],
    network: { ...emptyNetwork(), allow: packageRegistryRules(project), hostPorts },
    ...(capabilities ? { capabilities } : {}),
  };
  const from = { stdout: await sizeOf(paths.stdoutLog), stderr: await sizeOf(paths.stderrLog) };
  const abort = new AbortController();
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    abort.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const stopAll = async () => {
    await stopWorker(name, { graceMs: 3_000, env, cwd: project.dir }).catch(() => {});
  };
  try {
    // The project (its name, its files' names) is written by the dev guest too: what names it is printed terminal-safe.
    process.stderr.write(`iii dev: ${terminalSafeLine(`${project.name} (${project.language}, ${project.detectedFrom}) in VM "${name}" from ${image}`)}\n`);
    if (capabilities) process.stderr.write(`iii dev: ${capabilitiesSummary(capabilities)}\n`);
    const started = await startWorkerWithSpec(name, spec, {
      engineUrl: options.engineUrl,
      env,
      cwd: project.dir,
      ...(options.capture !== undefined ? { capture: resolve(options.capture) } : {}),
    });
    process.stderr.write(`iii dev: VM ready in ${started.timings.ready ?? "?"} ms; watching ${terminalSafeLine(project.dir)}\n`);
    const pump = async (file: string, offset: number, out: NodeJS.WriteStream) => {
      for await (const chunk of followFile(file, { from: offset, signal: abort.signal, pollMs: 50 })) out.write(chunk);
    };
    const pumps = Promise.all([pump(paths.stdoutLog, from.stdout, process.stdout), pump(paths.stderrLog, from.stderr, process.stderr)]);
    const client = SupervisorClient.forWorker(name, env, project.dir);
    const restart = (why: string) => {
      process.stderr.write(`iii dev: ${terminalSafeLine(why)}; restarting the workload\n`);
      client.restart(2_000).catch((error: Error) => process.stderr.write(`iii dev: restart failed: ${terminalSafeLine(error.message)}\n`));
    };
    const watcher = watchProject(project.dir, {
      installInputs: project.installInputs,
      onLimit: (max) =>
        process.stderr.write(`iii dev: the project has more than ${max} directories to watch; changes in the others do not restart the workload\n`),
      onSource: (changed) => restart(`${changed[0] ?? "a source file"}${changed.length > 1 ? ` (+${changed.length - 1})` : ""} changed`),
      // Runs on what the guest wrote: a failure here is reported, never left to end this process (an uncaught
      // rejection did, with the VM left running and no `iii worker` command that lists or stops it).
      onInstallInput: (inputs) => {
        installState(project.dir, project.installInputs).then(
          (state) => {
            if (state === "needed") restart(`${inputs.join(", ")} changed: re-installing`);
          },
          (error: Error) => restart(`${inputs.join(", ")} changed (${error.message})`),
        );
      },
    });
    try {
      await watcher.ready;
      while (!abort.signal.aborted) {
        const status = await workerStatus(name, env, project.dir);
        if (status.state !== "running") break;
        await sleep(200, undefined, { signal: abort.signal }).catch(() => {});
      }
    } finally {
      watcher.close();
    }
    if (interrupted) {
      process.stderr.write("\niii dev: stopping\n");
      await stopAll();
      abort.abort();
      await pumps.catch(() => {});
      return 130;
    }
    await sleep(300);
    abort.abort();
    await pumps.catch(() => {});
    // The run's end is recorded before its supervisor has released the VM's mounts and processes: wait for it.
    await awaitEndedSupervisor(name, env, project.dir).catch(() => {});
    const status = await workerStatus(name, env, project.dir);
    const code = status.lastExit?.code ?? 1;
    process.stderr.write(`iii dev: the workload ended (${terminalSafeLine(status.lastExit?.reason ?? "unknown")})\n`);
    return code;
  } catch (error) {
    await stopAll();
    throw error;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}
