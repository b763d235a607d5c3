import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { managedRoot, projectKey, workerPaths } from "../../paths.js";
import { readJson, type VmRecord } from "../../state/vm-record.js";
import { workerStatus, type WorkerStatus } from "../../status.js";
import type { LaunchRequest } from "../../launch/request.js";
import { loadWorkersFile } from "../../state/workers-file.js";
import { workersFilePath } from "../../paths.js";
import { isWasmImage, type WorkerSpec } from "../../state/model.js";

export interface ListedWorker extends WorkerStatus {
  image: string;
  spec: WorkerSpec;
  /** The directory of the iii.workers.yaml (or dev project) the worker belongs to. */
  project: string;
}

/**
 * `list --all`: the workers under III_HOME that are not in this project's iii.workers.yaml: dev sandboxes and
 * other projects' workers. Only VM workers that have been started are known there (their launch.json names the
 * project directory and the spec they ran with); a managed directory without one is skipped.
 */
export async function otherWorkers(cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<ListedWorker[]> {
  const here = projectKey(cwd);
  const ownNames = new Set(Object.keys((await loadWorkersFile(workersFilePath(cwd))).workers));
  const root = managedRoot(env);
  const found: ListedWorker[] = [];
  for (const key of (await readdir(root).catch(() => [] as string[])).sort()) {
    for (const name of (await readdir(join(root, key)).catch(() => [] as string[])).sort()) {
      if (key === here && ownNames.has(name)) continue;
      const launch = await readJson<LaunchRequest>(join(root, key, name, "launch.json"));
      if (!launch?.cwd || !launch.spec || launch.name !== name || projectKey(launch.cwd) !== key) continue;
      found.push({ ...(await workerStatus(name, env, launch.cwd)), image: launch.spec.image, spec: launch.spec, project: launch.cwd });
    }
  }
  return found;
}

/** The engine URL of a worker's last start (restart keeps it). */
export async function lastEngineUrl(name: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  return (await readJson<LaunchRequest>(workerPaths(name, env).launch))?.engineUrl;
}

/** `inspect`: what is known of each worker, as docker inspect gives it: spec, state, last exit, files. */
export async function inspectWorkers(names: string[], env: NodeJS.ProcessEnv = process.env, cwd: string = process.cwd()): Promise<unknown[]> {
  const file = await loadWorkersFile(workersFilePath(cwd));
  return Promise.all(
    names.map(async (name) => {
      const spec = file.workers[name]!;
      const paths = workerPaths(name, env, cwd);
      const status = await workerStatus(name, env, cwd);
      const record = status.state === "running" || status.state === "pending" ? await readJson<VmRecord>(paths.vmJson) : undefined;
      const launch = await readJson<LaunchRequest>(paths.launch);
      return {
        name,
        project: cwd,
        image: spec.image,
        tier: isWasmImage(spec.image) ? "wasm" : "vm",
        spec,
        state: {
          status: status.state,
          running: status.state === "running",
          health: status.state === "running" ? (status.unhealthy ? "unhealthy" : "healthy") : null,
          ...(status.unhealthy ? { healthReason: status.unhealthy.reason, unhealthySince: status.unhealthy.since } : {}),
          pid: status.pid ?? null,
          startedAt: record?.startedAt ?? null,
          vmm: record?.vmm ?? null,
          children: record?.children ?? [],
          engineUrl: launch?.engineUrl ?? null,
        },
        lastExit: status.lastExit ?? null,
        paths: { dir: paths.dir, logs: paths.logs, apiSocket: paths.apiSock },
      };
    }),
  );
}
