// The workload's cgroup. cgroup2 with a `worker` group is the design (the
// libkrunfw guest has a pure v2 hierarchy). Hosts that bind the memory
// controller to a v1 hierarchy (this CI machine does) get a v1 memory group as
// a fallback, so the memory limit is enforced and tested in both.

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Libc } from "./native.js";
import { MS } from "./native.js";

export interface CgroupLimits {
  memoryBytes: number | null;
  pidsMax: number | null;
  cpuMax: string | null;
}

export interface WorkerCgroup {
  /** Human description for READY timings. */
  readonly description: string;
  /** Run `fn` (a synchronous spawn) with init temporarily inside the group so the child is born there. */
  spawnInside<T>(fn: () => T): T;
  /** OOM kills recorded so far. */
  oomKills(): number;
  /** SIGKILL every process in the group (cgroup.kill, or signalling each pid). */
  killAll(): void;
  /** Remove the groups once empty (best effort, retries while killed members finish exiting). */
  remove(): Promise<void>;
}

function read(path: string): string {
  return readFileSync(path, "utf8");
}

function isMountpoint(path: string, fstype: string): boolean {
  try {
    return read("/proc/self/mounts")
      .split("\n")
      .some((line) => {
        const f = line.split(" ");
        return f[1] === path && f[2] === fstype;
      });
  } catch {
    return false;
  }
}

function counter(text: string, key: string): number {
  for (const line of text.split("\n")) {
    const [k, v] = line.split(" ");
    if (k === key && v !== undefined) return Number(v);
  }
  return 0;
}

/**
 * Set up the worker group(s). `unique` adds a random suffix (outside a VM the
 * hierarchy is shared with the host and other runs). Throws on failure; the
 * caller treats the step as optional. Returns warnings for limits it could not apply.
 */
export function setupCgroup(
  libc: Libc,
  limits: CgroupLimits,
  unique: boolean,
): { cgroup: WorkerCgroup; warnings: string[] } {
  const warnings: string[] = [];
  const root = "/sys/fs/cgroup";
  mkdirSync(root, { recursive: true });
  if (!isMountpoint(root, "cgroup2")) {
    libc.mount("cgroup2", root, "cgroup2", MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME, null);
  }
  const ownCgroup = (controller: string): string => {
    for (const line of read("/proc/self/cgroup").split("\n")) {
      const [, ctrls, path] = line.split(":");
      if (path !== undefined && (controller === "" ? ctrls === "" && line.startsWith("0:") : ctrls!.split(",").includes(controller))) {
        return path;
      }
    }
    return "/";
  };
  // Where init started, and where it lives between spawns (a leaf below it, see below).
  const parentV2 = join(root, ownCgroup(""));
  let homeV2 = parentV2;
  let leaf: string | null = null;
  const suffix = randomBytes(4).toString("hex");
  const name = unique ? `iii-worker-${suffix}` : "worker";
  const available = new Set(read(join(parentV2, "cgroup.controllers")).trim().split(/\s+/).filter(Boolean));
  const wanted = ["memory", "pids", "cpu"].filter((c) => available.has(c));
  if (wanted.length > 0) {
    const enable = (): void => writeFileSync(join(parentV2, "cgroup.subtree_control"), wanted.map((c) => `+${c}`).join(" "));
    try {
      enable();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EBUSY") {
        // cgroup v2 "no internal processes": a non-root group that holds init
        // (a container, a cgroup namespace) cannot hand controllers to children.
        // Init moves itself into a leaf of its own and tries again.
        try {
          leaf = join(parentV2, unique ? `iii-init-${suffix}` : "init");
          mkdirSync(leaf);
          writeFileSync(join(leaf, "cgroup.procs"), String(process.pid));
          homeV2 = leaf;
          enable();
        } catch (err2) {
          warnings.push(`enabling ${wanted.join(",")} in cgroup.subtree_control: ${(err2 as Error).message}`);
        }
      } else {
        warnings.push(`enabling ${wanted.join(",")} in cgroup.subtree_control: ${(err as Error).message}`);
      }
    }
  }
  const v2 = join(parentV2, name);
  mkdirSync(v2);
  const dirs: string[] = [v2];
  const limitFile = (file: string, value: string, controller: string): boolean => {
    if (!existsSync(join(v2, file))) return false;
    try {
      writeFileSync(join(v2, file), value);
      return true;
    } catch (err) {
      warnings.push(`${controller} limit ${file}=${value}: ${(err as Error).message}`);
      return true;
    }
  };

  let v1Memory: string | null = null;
  let homeV1: string | null = null;
  if (limits.memoryBytes !== null && !limitFile("memory.max", String(limits.memoryBytes), "memory")) {
    // memory is bound to a v1 hierarchy: mount it privately under /run.
    const v1root = "/run/iii/cgroup-memory";
    mkdirSync(v1root, { recursive: true });
    try {
      libc.mount("cgroup", v1root, "cgroup", MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME, "memory");
      homeV1 = join(v1root, ownCgroup("memory"));
      v1Memory = join(homeV1, name);
      mkdirSync(v1Memory);
      writeFileSync(join(v1Memory, "memory.limit_in_bytes"), String(limits.memoryBytes));
      try {
        // Without swap accounting this file is absent; then RAM is the only limit anyway.
        writeFileSync(join(v1Memory, "memory.memsw.limit_in_bytes"), String(limits.memoryBytes));
      } catch {}
      dirs.push(v1Memory);
    } catch (err) {
      warnings.push(`memory limit: no memory controller in cgroup2 and v1 fallback failed: ${(err as Error).message}`);
      v1Memory = null;
    }
  }
  if (limits.pidsMax !== null && !limitFile("pids.max", String(limits.pidsMax), "pids")) {
    warnings.push("pids limit: no pids controller in cgroup2");
  }
  if (limits.cpuMax !== null && !limitFile("cpu.max", limits.cpuMax, "cpu")) {
    warnings.push("cpu limit: no cpu controller in cgroup2");
  }

  const pidsIn = (dir: string): number[] =>
    read(join(dir, "cgroup.procs"))
      .split("\n")
      .filter(Boolean)
      .map(Number);

  const cgroup: WorkerCgroup = {
    description: `${v2}${v1Memory ? ` + ${v1Memory} (v1 memory)` : ""}`,
    spawnInside<T>(fn: () => T): T {
      const self = String(process.pid);
      try {
        for (const dir of dirs) writeFileSync(join(dir, "cgroup.procs"), self);
      } catch {
        // Could not join (group removed, pids.max reached): better unlimited than not started.
      }
      try {
        return fn();
      } finally {
        try {
          writeFileSync(join(homeV2, "cgroup.procs"), self);
          if (homeV1) writeFileSync(join(homeV1, "cgroup.procs"), self);
        } catch {}
      }
    },
    oomKills(): number {
      let n = 0;
      try {
        n += counter(read(join(v2, "memory.events")), "oom_kill");
      } catch {}
      if (v1Memory) {
        try {
          n += counter(read(join(v1Memory, "memory.oom_control")), "oom_kill");
        } catch {}
      }
      return n;
    },
    killAll(): void {
      try {
        writeFileSync(join(v2, "cgroup.kill"), "1");
      } catch {
        // Kernels before 5.14: signal each member.
      }
      for (const dir of dirs) {
        try {
          for (const pid of pidsIn(dir)) if (pid !== process.pid) process.kill(pid, "SIGKILL");
        } catch {}
      }
    },
    async remove(): Promise<void> {
      for (const dir of [...dirs].reverse()) {
        for (let attempt = 0; attempt < 50; attempt++) {
          try {
            rmdirSync(dir);
            break;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "EBUSY") break;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      }
      if (v1Memory) {
        try {
          libc.umount2("/run/iii/cgroup-memory", 2);
        } catch {}
      }
      if (leaf) {
        // Hand the controllers back so init may rejoin its original group, then drop the leaf.
        try {
          writeFileSync(join(parentV2, "cgroup.subtree_control"), wanted.map((c) => `-${c}`).join(" "));
          writeFileSync(join(parentV2, "cgroup.procs"), String(process.pid));
          rmdirSync(leaf);
        } catch {}
      }
    },
  };
  return { cgroup, warnings };
}
