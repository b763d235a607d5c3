// The Node init's cgroups: the portable implementation (portable/cgroup.ts)
// on node:fs and koffi's libc.
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import type { Libc } from "./native.js";
import { setupCgroup as setupPortable, type CgroupLimits, type CgroupOptions, type CgroupPlatform, type WorkerCgroup } from "../portable/cgroup.js";

export {
  DEFAULT_PIDS_MAX,
  EXEC_PIDS_RESERVE,
  INIT_CPU_WEIGHT,
  INIT_MEMORY_HEADROOM,
  V2_ROOT,
  workerMemoryMax,
  type CgroupLeaf,
  type CgroupLimits,
  type CgroupOptions,
  type WorkerCgroup,
} from "../portable/cgroup.js";

export function nodeCgroupPlatform(libc: Libc): CgroupPlatform {
  return {
    readFile: (path) => readFileSync(path, "utf8"),
    writeFile: (path, text) => writeFileSync(path, text),
    mkdir: (path, recursive) => void mkdirSync(path, { recursive: recursive === true }),
    rmdir: (path) => rmdirSync(path),
    subdirNames: (dir) => {
      try {
        return readdirSync(dir, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => e.name);
      } catch {
        return [];
      }
    },
    mount: (source, target, fstype, flags, data) => libc.mount(source, target, fstype, flags, data),
    umount2: (target, flags) => libc.umount2(target, flags),
    pid: process.pid,
    sigkill: (pid) => {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    },
    randomHex: (bytes) => randomBytes(bytes).toString("hex"),
    now: () => performance.now(),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
}

export function setupCgroup(libc: Libc, limits: CgroupLimits, options: CgroupOptions): { cgroup: WorkerCgroup; warnings: string[] } {
  return setupPortable(nodeCgroupPlatform(libc), limits, options);
}
