// Cgroups of the guest. The design (the libkrunfw guest: pure cgroup v2):
//
//   /sys/fs/cgroup/                 root: +memory +pids +cpu in subtree_control
//   ├── init/                       init itself (PID 1): memory.min = headroom, cpu.weight 1000
//   └── worker/                     the limits: memory.max, cpu.max, pids.max = pidsMax + EXEC_PIDS_RESERVE
//       ├── workload/               the workload (every generation): pids.max = pidsMax
//       └── exec-<n>/               one per exec (tty or not): pids.max = pidsMax, removed when empty
//
// cgroup v2 forbids processes in a group whose subtree_control delegates
// controllers (outside the root), so init has a group of its own and `worker`
// holds leaves only. The workload's leaf stops at pidsMax while `worker` keeps
// EXEC_PIDS_RESERVE more: an exec still starts while the workload fork-bombs.
// Every process is born in its leaf (the spawned child joins it before it
// execs; init itself never enters a leaf). A leaf is killed with cgroup.kill, which reaches
// every member even when the group is at pids.max and whatever process group
// or session they moved to.
//
// Hosts that bind controllers to v1 hierarchies (this CI machine: all of them)
// get the same groups in a private v1 mount per controller under /run/iii, so
// the limits are enforced and tested there too; membership and cgroup.kill
// still come from the (controller-less) v2 tree.

//
// Portable: the file system and system calls come in as a CgroupPlatform
// (static/cgroup.ts in the init), so this code runs unchanged under QuickJS and
// under Node (tests).

/** What the cgroup code needs from the runtime. Failing calls throw an Error whose `code` is the errno name. */
export interface CgroupPlatform {
  readFile(path: string): string;
  writeFile(path: string, text: string): void;
  /** Non-recursive mkdir throws EEXIST when the directory exists. */
  mkdir(path: string, recursive?: boolean): void;
  rmdir(path: string): void;
  /** Names of the subdirectories of `dir` ([] when unreadable). */
  subdirNames(dir: string): string[];
  mount(source: string, target: string, fstype: string, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  readonly pid: number;
  /** SIGKILL; errors ignored. */
  sigkill(pid: number): void;
  randomHex(bytes: number): string;
  now(): number;
  sleep(ms: number): Promise<void>;
}

/** mount(2) flags used here. */
const MS = { NOSUID: 2, NODEV: 4, NOEXEC: 8, RELATIME: 1 << 21 } as const;

let P: CgroupPlatform;

/** Absolute path join (like node:path join for absolute paths, without a trailing slash). */
function join(...parts: string[]): string {
  const out: string[] = [];
  for (const part of parts.join("/").split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") out.pop();
    else out.push(part);
  }
  return `/${out.join("/")}`;
}

function dirname(path: string): string {
  return join(path, "..");
}

export const V2_ROOT = "/sys/fs/cgroup";
/** pids.max when the host sent none (defence in depth: the host always should). */
export const DEFAULT_PIDS_MAX = 1024;
/** Tasks `worker` allows beyond the workload's pidsMax: execs start while the workload sits at its pids.max. */
export const EXEC_PIDS_RESERVE = 64;
/** Memory kept out of the worker's reach for init and the kernel (at most a quarter of RAM). */
export const INIT_MEMORY_HEADROOM = 96 * 1024 * 1024;
/** Init's cpu.weight against `worker` (default 100): init answers even when the workload spins on every CPU. */
export const INIT_CPU_WEIGHT = 1000;

const LIMIT_CONTROLLERS = ["memory", "pids", "cpu"] as const;
type Controller = (typeof LIMIT_CONTROLLERS)[number];

export interface CgroupLimits {
  memoryBytes: number | null;
  pidsMax: number | null;
  cpuMax: string | null;
}

export interface CgroupOptions {
  /** Random suffixes and cleanup (outside a VM the hierarchy is shared with the host and other runs). */
  unique: boolean;
  /**
   * Keep memory headroom for init: cap worker/memory.max below MemTotal and
   * protect init's group with memory.min (in a VM; on a host MemTotal is the host's).
   */
  headroom: boolean;
}

/** One leaf of `worker` (the workload's, or one exec's), in every hierarchy in use. */
export interface CgroupLeaf {
  readonly name: string;
  /** The leaf's directories: the v2 one first. */
  readonly dirs: readonly string[];
  /** The leaf's cgroup.procs files (v2 first): the child of a spawn writes "0" to each, joining before it execs. */
  procsFiles(): string[];
  /** SIGKILL every member (cgroup.kill; signalling each member in v1 hierarchies). */
  kill(): void;
  /** No live member left. */
  empty(): boolean;
  /** Wait until empty (or `timeoutMs`); true when empty. */
  waitEmpty(timeoutMs: number): Promise<boolean>;
  /** OOM kills of members so far. */
  oomKills(): number;
  /** rmdir (v1 and v2); false while members are left (the worker retries later). */
  remove(): boolean;
}

export interface WorkerCgroup {
  /** Human description for READY timings. */
  readonly description: string;
  /** The workload's leaf (`worker/workload`). */
  readonly workload: CgroupLeaf;
  /** A new leaf for one exec (`worker/exec-<n>`); throws if it cannot be made. */
  execLeaf(): CgroupLeaf;
  /** Creates the next exec's leaf now, off that exec's path (an empty group; best effort). */
  prepareExecLeaf(): void;
  /** Hand a finished exec's leaf back: removed now, or later once its stragglers are gone. */
  releaseExecLeaf(leaf: CgroupLeaf): void;
  /** SIGKILL every process of the worker (workload and execs). */
  killAll(): void;
  /** Remove the groups once empty (best effort). */
  remove(): Promise<void>;
}

function read(path: string): string {
  return P.readFile(path);
}

function errText(err: unknown): string {
  const e = err as Error & { code?: string };
  return e.code ?? e.message;
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

function pidsIn(dir: string): number[] {
  try {
    return read(join(dir, "cgroup.procs"))
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** /proc/self/cgroup lines: hierarchy id, controllers, path. */
function ownCgroups(): Array<{ controllers: string[]; path: string; v2: boolean }> {
  const out: Array<{ controllers: string[]; path: string; v2: boolean }> = [];
  for (const line of read("/proc/self/cgroup").split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    out.push({ controllers: m[2] === "" ? [] : m[2]!.split(","), path: m[3]!, v2: m[1] === "0" && m[2] === "" });
  }
  return out;
}

/** MemTotal in bytes (null if unreadable). */
export function memTotalBytes(): number | null {
  try {
    const m = /^MemTotal:\s+(\d+) kB$/m.exec(read("/proc/meminfo"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Init's headroom and the worker's memory.max: the request, capped so that
 * `headroom` (INIT_MEMORY_HEADROOM, at most a quarter of RAM) stays free for
 * init and the kernel. Without a request the cap alone applies.
 */
export function workerMemoryMax(requested: number | null, memTotal: number | null): { max: number | null; headroom: number | null } {
  if (memTotal === null || memTotal <= 0) return { max: requested, headroom: null };
  const headroom = Math.min(INIT_MEMORY_HEADROOM, Math.floor(memTotal / 4 / 4096) * 4096);
  const cap = memTotal - headroom;
  return { max: requested === null ? cap : Math.min(requested, cap), headroom };
}

/** cpu.max ("quota period" or "max period") as v1 cfs_quota_us / cfs_period_us. */
function cfsFromCpuMax(cpuMax: string): { quota: string; period: string } {
  const [quota, period] = cpuMax.split(" ");
  return { quota: quota === "max" ? "-1" : quota!, period: period! };
}

interface V1Hierarchy {
  /** The controllers of the hierarchy (as mounted, e.g. cpu,cpuacct). */
  mountControllers: string[];
  /** The limit controllers it serves here. */
  serves: Controller[];
  mountpoint: string;
  /** Init's group in it (where init returns after a spawn). */
  home: string;
}

/**
 * Enables `controllers` in `dir`'s cgroup.subtree_control: all in one write (the kernel takes several `+name`
 * tokens at once, and each write is an open, a write and a close, 1-3 ms each under TCG), and one by one only when
 * that write fails, so each controller that cannot be enabled gets its own warning. Returns the enabled ones.
 */
function enableControllers(dir: string, controllers: readonly Controller[], warnings: string[]): Set<Controller> {
  const file = join(dir, "cgroup.subtree_control");
  if (controllers.length === 0) return new Set();
  try {
    P.writeFile(file, controllers.map((c) => `+${c}`).join(" "));
    return new Set(controllers);
  } catch {
    // one of them failed (the write enables none then): find which, one at a time
  }
  const enabled = new Set<Controller>();
  for (const c of controllers) {
    try {
      P.writeFile(file, `+${c}`);
      enabled.add(c);
    } catch (err) {
      warnings.push(`enabling ${c} in ${file}: ${errText(err)}`);
    }
  }
  return enabled;
}

/**
 * Set up init's group, the worker group and the workload's leaf. Throws when
 * cgroup2 is unusable; the caller treats the step as optional. Returns
 * warnings for whatever limit or protection it could not apply (the host sees
 * them in READY).
 */
export function setupCgroup(platform: CgroupPlatform, limits: CgroupLimits, options: CgroupOptions): { cgroup: WorkerCgroup; warnings: string[] } {
  P = platform;
  const warnings: string[] = [];
  const notes: string[] = [];
  P.mkdir(V2_ROOT, true);
  if (!isMountpoint(V2_ROOT, "cgroup2")) {
    // favordynmods: moving a process between groups (every exec joins its own leaf) no longer waits for an RCU
    // grace period; under TCG that took ~6 ms of each exec, ~1 ms with it. Kernels before 6.0 refuse the option.
    const flags = MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME;
    try {
      P.mount("cgroup2", V2_ROOT, "cgroup2", flags, "favordynmods");
    } catch {
      P.mount("cgroup2", V2_ROOT, "cgroup2", flags, null);
    }
  }
  const own = ownCgroups();
  const base = join(V2_ROOT, own.find((c) => c.v2)?.path ?? "/");
  // Random names only outside a VM (a VM's root cgroup is its own): /dev/urandom is three syscalls under TCG.
  const suffix = options.unique ? P.randomHex(4) : "";
  const workerName = options.unique ? `iii-worker-${suffix}` : "worker";
  const initName = options.unique ? `iii-init-${suffix}` : "init";
  const pidsMax = limits.pidsMax ?? DEFAULT_PIDS_MAX;
  if (limits.pidsMax === null) notes.push(`pidsMax not sent, using ${DEFAULT_PIDS_MAX}`);
  let memoryMax = limits.memoryBytes;
  let headroom: number | null = null;
  if (options.headroom) {
    const total = memTotalBytes();
    ({ max: memoryMax, headroom } = workerMemoryMax(limits.memoryBytes, total));
    if (limits.memoryBytes !== null && memoryMax !== null && memoryMax < limits.memoryBytes) {
      notes.push(`memory.max ${memoryMax} (asked ${limits.memoryBytes}; MemTotal ${total}, ${headroom} kept for init)`);
    }
  }

  // Init's own group: out of the worker's limits, and needed in a non-root
  // base before controllers can be delegated (no internal processes).
  const initDir = join(base, initName);
  let home = base;
  try {
    P.mkdir(initDir);
    P.writeFile(join(initDir, "cgroup.procs"), String(P.pid));
    home = initDir;
  } catch (err) {
    warnings.push(`init's own group ${initDir}: ${errText(err)}`);
  }

  const available = new Set(read(join(base, "cgroup.controllers")).trim().split(/\s+/).filter(Boolean));
  const enabled = enableControllers(base, LIMIT_CONTROLLERS.filter((c) => available.has(c)), warnings);
  if (home === initDir) {
    if (enabled.has("memory") && headroom !== null) {
      try {
        P.writeFile(join(initDir, "memory.min"), String(headroom));
      } catch (err) {
        warnings.push(`init memory.min=${headroom}: ${errText(err)}`);
      }
    }
    if (enabled.has("cpu")) {
      try {
        P.writeFile(join(initDir, "cpu.weight"), String(INIT_CPU_WEIGHT));
      } catch (err) {
        warnings.push(`init cpu.weight=${INIT_CPU_WEIGHT}: ${errText(err)}`);
      }
    }
  }

  const worker = join(base, workerName);
  P.mkdir(worker);
  const workerDirs: string[] = [worker];
  enableControllers(worker, [...enabled], warnings);
  const write = (dir: string, file: string, value: string, what: string): boolean => {
    try {
      P.writeFile(join(dir, file), value);
      return true;
    } catch (err) {
      warnings.push(`${what} ${join(dir, file)}=${value}: ${errText(err)}`);
      return false;
    }
  };

  // Which hierarchy enforces each requested limit.
  const wantedLimit: Record<Controller, boolean> = { memory: memoryMax !== null, pids: true, cpu: limits.cpuMax !== null };
  const v1: V1Hierarchy[] = [];
  for (const c of LIMIT_CONTROLLERS) {
    if (!wantedLimit[c] || enabled.has(c)) continue;
    const line = own.find((l) => !l.v2 && l.controllers.includes(c));
    if (!line) {
      warnings.push(`${c} limit not applied: no ${c} controller in cgroup2 or cgroup v1`);
      continue;
    }
    const existing = v1.find((h) => h.mountControllers.includes(c));
    if (existing) {
      existing.serves.push(c);
      continue;
    }
    const mountpoint = `/run/iii/cgroup-${c}`;
    try {
      P.mkdir(mountpoint, true);
      if (!isMountpoint(mountpoint, "cgroup")) {
        P.mount("cgroup", mountpoint, "cgroup", MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME, line.controllers.join(","));
      }
      const h: V1Hierarchy = { mountControllers: line.controllers, serves: [c], mountpoint, home: join(mountpoint, line.path) };
      P.mkdir(join(h.home, workerName));
      v1.push(h);
    } catch (err) {
      warnings.push(`${c} limit not applied: no ${c} controller in cgroup2 and the v1 fallback failed: ${errText(err)}`);
    }
  }
  const v1Dir = (c: Controller): string | null => {
    const h = v1.find((x) => x.serves.includes(c));
    return h ? join(h.home, workerName) : null;
  };
  for (const h of v1) workerDirs.push(join(h.home, workerName));

  // The worker's limits.
  const applied: string[] = [];
  if (memoryMax !== null) {
    if (enabled.has("memory")) {
      if (write(worker, "memory.max", String(memoryMax), "memory limit")) applied.push(`memory.max=${memoryMax}`);
    } else if (v1Dir("memory")) {
      const dir = v1Dir("memory")!;
      if (write(dir, "memory.limit_in_bytes", String(memoryMax), "memory limit (v1)")) applied.push(`memory ${memoryMax} (v1)`);
      try {
        // Without swap accounting this file is absent; then RAM is the only limit anyway.
        P.writeFile(join(dir, "memory.memsw.limit_in_bytes"), String(memoryMax));
      } catch {}
    }
  }
  const workerPids = String(pidsMax + EXEC_PIDS_RESERVE);
  if (enabled.has("pids")) {
    if (write(worker, "pids.max", workerPids, "pids limit")) applied.push(`pids.max=${workerPids}`);
  } else if (v1Dir("pids")) {
    if (write(v1Dir("pids")!, "pids.max", workerPids, "pids limit (v1)")) applied.push(`pids ${workerPids} (v1)`);
  }
  if (limits.cpuMax !== null) {
    if (enabled.has("cpu")) {
      if (write(worker, "cpu.max", limits.cpuMax, "cpu limit")) applied.push(`cpu.max=${limits.cpuMax}`);
    } else if (v1Dir("cpu")) {
      const { quota, period } = cfsFromCpuMax(limits.cpuMax);
      const dir = v1Dir("cpu")!;
      if (write(dir, "cpu.cfs_period_us", period, "cpu limit (v1)") && write(dir, "cpu.cfs_quota_us", quota, "cpu limit (v1)")) {
        applied.push(`cfs ${quota}/${period} (v1)`);
      }
    }
  }

  // Leaves.
  const makeLeaf = (name: string): CgroupLeaf => {
    const v2dir = join(worker, name);
    const dirs = [v2dir, ...v1.map((h) => join(h.home, workerName, name))];
    for (const d of dirs) P.mkdir(d);
    // Each leaf stops at pidsMax on its own (the parent adds the exec reserve).
    const pidsDir = enabled.has("pids") ? v2dir : v1Dir("pids") ? join(v1Dir("pids")!, name) : null;
    if (pidsDir) P.writeFile(join(pidsDir, "pids.max"), String(pidsMax));
    return leaf(name, dirs, enabled.has("memory"), v1Dir("memory") ? join(v1Dir("memory")!, name) : null);
  };
  let workload: CgroupLeaf;
  try {
    workload = makeLeaf("workload");
    applied.push(`workload pids.max=${pidsMax}`);
  } catch (err) {
    throw new Error(`workload leaf in ${worker}: ${errText(err)}`, { cause: err });
  }

  let execCount = 0;
  let spare: CgroupLeaf | null = null;
  const lingering = new Set<CgroupLeaf>();
  const sweep = (): void => {
    for (const l of lingering) if (l.remove()) lingering.delete(l);
  };
  const description =
    `${worker} {${applied.join(", ")}}; init in ${home}` +
    (headroom !== null && enabled.has("memory") ? ` (memory.min=${headroom})` : "") +
    (v1.length > 0 ? `; v1 ${v1.map((h) => `${h.serves.join(",")} at ${h.mountpoint}`).join(", ")}` : "") +
    (notes.length > 0 ? `; ${notes.join("; ")}` : "");

  const cgroup: WorkerCgroup = {
    description,
    workload,
    execLeaf(): CgroupLeaf {
      sweep();
      if (spare) {
        const ready = spare;
        spare = null;
        return ready;
      }
      execCount += 1;
      return makeLeaf(`exec-${execCount}`);
    },
    prepareExecLeaf(): void {
      if (spare) return;
      try {
        execCount += 1;
        spare = makeLeaf(`exec-${execCount}`);
      } catch {
        // the next exec makes its own and reports what failed
      }
    },
    releaseExecLeaf(l: CgroupLeaf): void {
      if (!l.remove()) lingering.add(l);
    },
    killAll(): void {
      try {
        P.writeFile(join(worker, "cgroup.kill"), "1");
      } catch {}
      // v1 hierarchies (and kernels before 5.14): signal each member.
      for (let round = 0; round < 3; round++) {
        for (const dir of workerDirs) {
          for (const d of [dir, ...subdirs(dir)]) for (const pid of pidsIn(d)) if (pid !== P.pid) trySigkill(pid);
        }
      }
    },
    async remove(): Promise<void> {
      for (const dir of workerDirs) {
        for (const d of [...subdirs(dir), dir]) await rmdirRetry(d);
      }
      for (const h of v1) {
        try {
          P.umount2(h.mountpoint, 2);
        } catch {}
      }
      if (options.unique && home === initDir) {
        // Hand the controllers back so init may rejoin its original group, then drop its group.
        try {
          P.writeFile(join(base, "cgroup.subtree_control"), [...enabled].map((c) => `-${c}`).join(" "));
        } catch {}
        try {
          P.writeFile(join(base, "cgroup.procs"), String(P.pid));
          P.rmdir(initDir);
        } catch {}
      }
    },
  };
  return { cgroup, warnings };
}

function subdirs(dir: string): string[] {
  try {
    return P.subdirNames(dir).map((name) => join(dir, name));
  } catch {
    return [];
  }
}

function trySigkill(pid: number): void {
  P.sigkill(pid);
}

async function rmdirRetry(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      P.rmdir(dir);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== "EBUSY") return;
      await P.sleep(20);
    }
  }
}

function leaf(name: string, dirs: string[], v2Memory: boolean, v1Memory: string | null): CgroupLeaf {
  const [v2dir, ...v1dirs] = dirs as [string, ...string[]];
  const self: CgroupLeaf = {
    name,
    dirs,
    procsFiles(): string[] {
      return dirs.map((d) => join(d, "cgroup.procs"));
    },
    kill(): void {
      let v2killed = false;
      try {
        P.writeFile(join(v2dir, "cgroup.kill"), "1");
        v2killed = true;
      } catch {}
      for (let round = 0; round < 3; round++) {
        for (const d of v2killed ? v1dirs : dirs) for (const pid of pidsIn(d)) if (pid !== P.pid) trySigkill(pid);
      }
    },
    empty(): boolean {
      try {
        if (!/^populated 0$/m.test(read(join(v2dir, "cgroup.events")))) return false;
      } catch {
        if (pidsIn(v2dir).length > 0) return false;
      }
      return v1dirs.every((d) => pidsIn(d).length === 0);
    },
    async waitEmpty(timeoutMs: number): Promise<boolean> {
      const deadline = P.now() + timeoutMs;
      while (!self.empty()) {
        if (P.now() > deadline) return false;
        await P.sleep(10);
      }
      return true;
    },
    oomKills(): number {
      let n = 0;
      if (v2Memory) {
        // The leaf's own events (memory delegated to the leaves), else the worker's.
        for (const file of [join(v2dir, "memory.events"), join(dirname(v2dir), "memory.events")]) {
          try {
            n += counter(read(file), "oom_kill");
            break;
          } catch {}
        }
      }
      if (v1Memory) {
        try {
          n += counter(read(join(v1Memory, "memory.oom_control")), "oom_kill");
        } catch {}
      }
      return n;
    },
    remove(): boolean {
      let ok = true;
      for (const d of [...dirs].reverse()) {
        try {
          P.rmdir(d);
        } catch (err) {
          if ((err as { code?: string }).code !== "ENOENT") ok = false;
        }
      }
      return ok;
    },
  };
  return self;
}
