import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { processThreadsReport } from "@iii/filesystem/client";
import { runWorkerCli, type CliRun } from "../helpers.js";
import { SupervisorClient } from "../../src/api/client.js";
import { projectKey } from "../../src/paths.js";
import type { VirtioDeviceState } from "../../src/vmm/types.js";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const REPO = join(HERE, "../../../..");

/** Why VM tests cannot run here, or undefined when they can. */
export function vmSkipReason(): string | undefined {
  if (process.env.III_SKIP_VM === "1") return "III_SKIP_VM=1";
  const doctor = spawnSync(process.execPath, [join(HERE, "../../dist/cli.js"), "doctor", "--json"], { encoding: "utf8" });
  try {
    const report = JSON.parse(doctor.stdout) as { canRunVm: boolean; checks: { name: string; verdict: string; detail: string }[] };
    if (!report.canRunVm) return `doctor says no VM can run: ${report.checks.filter((c) => c.verdict === "fail").map((c) => `${c.name}: ${c.detail}`).join("; ")}`;
  } catch {
    return `doctor did not run: ${doctor.stderr}`;
  }
  const init = process.env.III_INIT_PATH ?? join(REPO, "packages/init/dist/init.krun");
  if (!existsSync(init)) return `guest init ${init} is not built (pnpm --filter @iii/init build:static)`;
  return undefined;
}

export function busyboxRootfs(): string {
  return execFileSync("sh", [join(HERE, "../fixtures/build-busybox-rootfs.sh")], { encoding: "utf8" }).trim();
}

export function debianRootfs(): string {
  return execFileSync(join(REPO, "scripts/build-test-rootfs.sh"), [], { encoding: "utf8", timeout: 600_000 }).trim();
}

/** A project dir with its own III_HOME; every run goes through the real CLI. */
export class Project {
  private made: string | undefined;
  private readonly extraEnv: NodeJS.ProcessEnv;

  constructor(extraEnv: NodeJS.ProcessEnv = {}) {
    this.extraEnv = extraEnv;
  }

  /** Made on first use: a suite that is skipped (its describe body still runs) leaves no directory behind. */
  get dir(): string {
    return (this.made ??= mkdtempSync(join(tmpdir(), "iii-vm-")));
  }

  get home(): string {
    return join(this.dir, "h");
  }

  get env(): NodeJS.ProcessEnv {
    return { III_HOME: this.home, ...this.extraEnv };
  }

  cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
    return runWorkerCli(args, { cwd: this.dir, env: { ...this.env, ...env } });
  }

  /** The supervisor log and console tails of a worker (of `projectDir`, default this one's dir), for failure messages. */
  diagnostics(name: string, projectDir: string = this.dir): string {
    const tail = (file: string) => this.read(`managed/${name}/logs/${file}`, projectDir).split("\n").slice(-25).join("\n");
    return `\n--- supervisor.log ---\n${tail("supervisor.log")}\n--- console.log ---\n${tail("console.log")}`;
  }

  /** A worker's managed directory: `III_HOME/managed/<key of the project>/<name>` (the project defaults to this one's dir). */
  managed(name: string, projectDir: string = this.dir): string {
    return join(this.home, "managed", projectKey(projectDir), name);
  }

  /** A file under III_HOME; `managed/<name>/…` is read from that worker's managed dir in `projectDir`. */
  read(path: string, projectDir: string = this.dir): string {
    const scoped = /^managed\/([^/]+)\/(.*)$/.exec(path);
    try {
      return readFileSync(scoped ? join(this.managed(scoped[1]!, projectDir), scoped[2]!) : join(this.home, path), "utf8");
    } catch {
      return "";
    }
  }

  async dispose(): Promise<void> {
    if (this.made === undefined) return;
    await this.cli(["stop-all", "--timeout", "1"]).catch(() => {});
    rmSync(this.made, { recursive: true, force: true });
  }
}

/** Processes whose command line mentions `needle` (to prove nothing of a run is left behind). */
export function processesMentioning(needle: string): string[] {
  const out = spawnSync("ps", ["-eo", "pid,args"], { encoding: "utf8" }).stdout;
  return out.split("\n").filter((line) => line.includes(needle) && !line.includes("ps -eo"));
}

/**
 * For a failure message: every host process whose command line mentions `needle` (a worker's FUSE servers,
 * virtiofsd, QEMU) or whose pid is in `pids` (its supervisor, from vm.json: its command line names no path), each
 * thread with its state, wait channel, system call and kernel stack (@iii/filesystem's processThreadsReport). A
 * FUSE server thread stuck outside `fuse_dev_do_read`, or a virtiofsd thread in D, shows here.
 */
export function hostThreadsSnapshot(needle: string, pids: number[] = []): string {
  const lines: string[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
    } catch {
      continue;
    }
    if (!(cmdline.includes(needle) || pids.includes(Number(pid))) || pid === String(process.pid)) continue;
    lines.push(`${pid} ${cmdline.slice(0, 160)}`, processThreadsReport(Number(pid)));
  }
  return lines.join("\n");
}

/** One vCPU's registers as the supervisor's GET /debug/registers reads them through QEMU. */
export interface VcpuSample {
  rip: string;
  /** 0: the guest kernel; 3: a guest process. */
  cpl: number;
  halted: boolean;
}

/** GET /debug/registers on a worker's api.sock (its managed dir): QEMU's `info registers -a`. */
export function vcpuRegisters(managedDir: string): Promise<string> {
  return new SupervisorClient(join(managedDir, "api.sock")).vcpuRegisters();
}

/** GET /debug/virtio: each virtio device's interrupt status and ring indexes. */
export function virtioState(managedDir: string): Promise<VirtioDeviceState[]> {
  return new SupervisorClient(join(managedDir, "api.sock")).virtioState();
}

/** virtioState() as lines for a failure message (or the error). */
export async function virtioSnapshot(managedDir: string): Promise<string> {
  try {
    return (await virtioState(managedDir))
      .map((d) => `${d.name} ${d.path} isr=${d.isr} eventIdx=${d.eventIdx}${d.error ? ` error=${d.error}` : ""}\n` +
        d.queues.map((q) => `  q${q.queue}/${q.size} avail=${q.availIdx} used=${q.usedIdx} usedEvent=${q.usedEvent} availEvent=${q.availEvent} flags=${q.availFlags}/${q.usedFlags}${q.device ? ` qemu=${JSON.stringify(q.device)}` : ""}`).join("\n"))
      .join("\n");
  } catch (error) {
    return (error as Error).message;
  }
}

/** Each vCPU's instruction pointer, privilege level and halt state, from `info registers -a`. */
export function parseVcpuRegisters(text: string): VcpuSample[] {
  return text
    .split(/(?=RAX=)/)
    .filter((cpu) => cpu.includes("RIP="))
    .map((cpu) => ({
      rip: /RIP=([0-9a-f]+)/.exec(cpu)?.[1] ?? "?",
      cpl: Number(/CPL=(\d)/.exec(cpu)?.[1] ?? -1),
      halted: /HLT=1/.test(cpu),
    }));
}

/**
 * For a failure message about a guest that answers nothing: `rounds` samples of its vCPUs 200 ms apart (RIP,
 * kernel or user, halted), so a spinning guest says where it spins (a kernel RIP maps to a symbol through the
 * guest's /proc/kallsyms, the same on every boot of that kernel without KASLR).
 */
export async function vcpuSnapshot(managedDir: string, rounds = 10): Promise<string> {
  const lines: string[] = [];
  for (let i = 0; i < rounds; i++) {
    try {
      const samples = parseVcpuRegisters(await vcpuRegisters(managedDir));
      lines.push(samples.map((s, cpu) => `cpu${cpu} RIP=${s.rip} ${s.cpl === 0 ? "kernel" : s.cpl === 3 ? "user" : `CPL=${s.cpl}`}${s.halted ? " halted" : ""}`).join("  "));
    } catch (error) {
      lines.push((error as Error).message);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return lines.join("\n");
}

export function mountsUnder(prefix: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((p) => p.startsWith(prefix));
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
