import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { IiiError } from "../errors.js";

/**
 * A VM's CPU bound on the host: QEMU in a cgroup of its own with a CPU quota (`--cpus`). The guest's own cgroup
 * (init's `worker` group) is only the guest's view: root in the guest can lift it (`echo max > cpu.max`, or move
 * itself to the root group) and then runs its vCPU flat out. Here the guest cannot reach: QEMU's threads are
 * throttled by the host kernel to the quota, whatever the guest does.
 *
 * cgroup v2 (unified, with the cpu controller): `<mnt>/iii/<vm>/cpu.max`; cgroup v1: the cpu hierarchy's
 * `iii/<vm>/cpu.cfs_quota_us` + `cpu.cfs_period_us`. Needs root (or a delegated tree); without either, the
 * caller decides (the supervisor refuses to start a VM whose `--cpus` it cannot enforce).
 */
export interface CpuCgroup {
  readonly dir: string;
  readonly version: 1 | 2;
  /** Moves process `pid` (all its threads) into the group. */
  place(pid: number): Promise<void>;
  /** Removes the group (it must be empty: its processes ended). Never throws. */
  remove(): Promise<void>;
}

const PERIOD_US = 100_000;

interface CpuHierarchy {
  version: 1 | 2;
  mount: string;
}

/** Where the cpu controller is mounted, from /proc/self/mountinfo; undefined when it is nowhere. */
export function findCpuHierarchy(mountinfo: string = readFileSync("/proc/self/mountinfo", "utf8")): CpuHierarchy | undefined {
  let v1: CpuHierarchy | undefined;
  for (const line of mountinfo.split("\n")) {
    const [pre, post] = line.split(" - ");
    if (!pre || !post) continue;
    const mount = unescapeMount(pre.split(" ")[4] ?? "");
    const [fstype, , superOptions = ""] = post.split(" ");
    if (fstype === "cgroup2") {
      // A unified hierarchy counts only with the cpu controller available at its root (hybrid setups mount an empty one).
      const controllers = join(mount, "cgroup.controllers");
      if (existsSync(controllers) && readFileSync(controllers, "utf8").split(/\s+/).includes("cpu")) return { version: 2, mount };
    } else if (fstype === "cgroup" && superOptions.split(",").includes("cpu")) {
      v1 ??= { version: 1, mount };
    }
  }
  return v1;
}

function unescapeMount(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The group's name for a VM: stable per managed dir, so a crashed supervisor's group is found and reused. */
export function cgroupNameFor(managedDir: string): string {
  return `vm-${createHash("sha256").update(managedDir).digest("hex").slice(0, 16)}`;
}

/** Creates (or reuses) the VM's group with `cpus` CPUs of bandwidth. */
export async function createCpuCgroup(name: string, cpus: number, hierarchy = findCpuHierarchy()): Promise<CpuCgroup> {
  if (!(cpus > 0) || !Number.isFinite(cpus)) throw new IiiError("InvalidQuantity", `a CPU quota must be a positive number of CPUs, got ${cpus}`);
  if (!hierarchy) throw new IiiError("CpuLimitUnsupported", "no cgroup hierarchy with the cpu controller is mounted on this host");
  const quota = Math.max(1000, Math.round(cpus * PERIOD_US));
  const parent = join(hierarchy.mount, "iii");
  const dir = join(parent, name);
  try {
    await mkdir(dir, { recursive: true });
    if (hierarchy.version === 2) {
      // The controller must be enabled on the way down: at the root (usually already) and on our parent, which
      // holds no process itself (cgroup v2's no-internal-process rule).
      await enableCpu(hierarchy.mount);
      await enableCpu(parent);
      await writeFile(join(dir, "cpu.max"), `${quota} ${PERIOD_US}`);
    } else {
      await writeFile(join(dir, "cpu.cfs_period_us"), String(PERIOD_US));
      await writeFile(join(dir, "cpu.cfs_quota_us"), String(quota));
    }
  } catch (error) {
    // Not left behind half made (an empty group only `remove` would clear); one still holding processes stays.
    await rmdir(dir).catch(() => undefined);
    throw new IiiError("CpuLimitUnsupported", `cannot set up the host cgroup ${dir} for the VM's CPU quota: ${(error as Error).message}`, { cause: error });
  }
  return {
    dir,
    version: hierarchy.version,
    async place(pid: number) {
      try {
        await writeFile(join(dir, "cgroup.procs"), String(pid));
      } catch (error) {
        throw new IiiError("CpuLimitUnsupported", `cannot move pid ${pid} into ${dir}: ${(error as Error).message}`, { cause: error });
      }
    },
    async remove() {
      await rmdir(dir).catch(() => undefined);
    },
  };
}

/**
 * Removes a VM's group if it is there (a crashed supervisor's); never throws. A group still holding a process the
 * caller just killed (EBUSY until it has exited) is tried again for up to `waitMs`.
 */
export async function removeCpuCgroup(name: string, hierarchy = findCpuHierarchyOrNone(), waitMs = 0): Promise<void> {
  if (!hierarchy) return;
  const dir = join(hierarchy.mount, "iii", name);
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EBUSY" || Date.now() >= deadline) return;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function findCpuHierarchyOrNone(): CpuHierarchy | undefined {
  try {
    return findCpuHierarchy();
  } catch {
    return undefined;
  }
}

async function enableCpu(group: string): Promise<void> {
  const control = join(group, "cgroup.subtree_control");
  if ((await readFile(control, "utf8")).split(/\s+/).includes("cpu")) return;
  await writeFile(control, "+cpu");
}
