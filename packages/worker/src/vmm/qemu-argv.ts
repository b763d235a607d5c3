/**
 * Pure command-line builders for the qemu adapter: no I/O, so every flag is unit-tested. The flags are the
 * ones measured in DESIGN §3; each "why" is next to the flag.
 */
import { confinementArgs, type QemuConfinement, type QemuDropSyntax } from "./qemu-confine.js";
import { join } from "node:path";
import { CONTROL_PORT_NAME, GUEST_PATHS } from "@iii/init";
import { IiiError } from "../errors.js";
import type { Accel } from "./accel.js";
import type { VmConfig, VmControlPort, VmNetwork, VmShare } from "./types.js";

/** virtio-fs tags are at most 36 bytes (virtio spec, struct virtio_fs_config). */
export const MAX_VIRTIOFS_TAG_BYTES = 36;
/** x86 COMMAND_LINE_SIZE. */
export const MAX_KERNEL_CMDLINE_BYTES = 2048;
/**
 * The kernel hands init at most MAX_INIT_ENVS (32) environment entries and already uses two (HOME, TERM);
 * beyond that it panics with "Too many boot env vars".
 */
export const MAX_CMDLINE_ENV = 30;

/**
 * Kernel words that shorten a TCG boot, measured here on the busybox floor (guest time to "Run /init.krun",
 * 4 alternating boots each): 1.40–1.79 s without them, 0.92–0.97 s with them.
 * - `tsc=reliable`: under TCG the guest TSC follows the host clock while the emulated CPU is slow, so the
 *   clocksource watchdog declares tsc-early unstable and falls back to refined-jiffies (tick resolution, and
 *   it lags under host load); trusting the TSC keeps an accurate, high-resolution clock.
 * - `noapictimer`: skip straight to the PIT (which microvm keeps: pit=off hangs).
 * - `initcall_blacklist=…`: the jitter-entropy self test (~90 ms emulated; nothing needs it outside FIPS
 *   mode, the CRNG does not) and KVM's own init inside the guest (~80 ms; the guest never runs VMs).
 * - `rcupdate.rcu_expedited=1`: every synchronize_rcu() as an expedited grace period. A normal one waits for
 *   ticks of the emulated CPU, several ms under TCG, and init's cgroup set-up waits for a few (mounting cgroup2
 *   11 → 1 ms, enabling the controllers 17 → 8, moving init into its group 7 → 4, traced in the guest); init's
 *   steps took 132 vs 152 ms (medians of 8 interleaved boots). On one or two vCPUs an expedited grace period is
 *   a few IPIs at most.
 *
 * `noapictimer` costs idle CPU and is kept anyway: on the PIT alone the kernel can arm at most ~27 ms ahead, so
 * an idle guest wakes ~36 times a second (its QEMU at 1.6–1.85% of a core; 0.5–0.6% with the APIC timer). But
 * letting the kernel calibrate TCG's APIC timer made the busybox floor's first line 1605 ms instead of 1282 ms
 * (medians of 8 interleaved boots, load 3.7), and start time is the scarcer budget.
 */
export const TCG_BOOT_TUNING = ["tsc=reliable", "noapictimer", "initcall_blacklist=jent_mod_init,svm_init,vmx_init", "rcupdate.rcu_expedited=1"] as const;
/** With more than one vCPU: the initcall part (noapictimer is for a lone vCPU). */
export const TCG_BOOT_TUNING_SMP = ["initcall_blacklist=jent_mod_init,svm_init,vmx_init", "rcupdate.rcu_expedited=1"] as const;

/**
 * Under TCG a guest with more than one vCPU boots with only the first online (init brings the others up just
 * before the workload: @iii/init's portable/cpus.ts). The kernel patches its own code as it boots and sets up
 * (static keys: sched_clock's "stable" key from a late initcall, CFS bandwidth's when init sets a CPU quota) by
 * writing `int3` over an instruction, syncing every CPU, then writing the rest; QEMU's parallel TCG can still run a
 * stale translation holding that `int3` on another vCPU after the patch is done, and the kernel dies ("Oops: int3"
 * in sched_clock_cpu or put_prev_task_fair, then "Kernel panic - not syncing"). With one CPU online there is no
 * other vCPU to run it. Measured in the worker README ("Guests with more than one vCPU under TCG").
 * QEMU's single-threaded TCG would avoid it too, but it translates without the guest's memory barriers, which
 * virtiofsd's rings need (see smpOption).
 */
export const TCG_SMP_BOOT_WORDS = ["maxcpus=1"] as const;

export interface KernelCmdlineSpec {
  rootTag: string;
  init: string;
  accel: Accel;
  tscKhz?: number;
  /** Add TCG_BOOT_TUNING under TCG (default true). */
  tcgTuning?: boolean;
  /** vCPUs of the guest: under TCG more than one boots with `maxcpus=1` (TCG_SMP_BOOT_WORDS). Default 1. */
  vcpus?: number;
  extra?: string[];
  env?: Record<string, string>;
}

/**
 * `console=hvc0 root=<tag> rootfstype=virtiofs rw init=<init> reboot=t panic=-1 quiet [tsc_early_khz=N] …`.
 * reboot=t + QEMU's -no-reboot turn init's reboot(RB_AUTOBOOT) into QEMU's exit (the libkrunfw kernel has
 * no ACPI, so it cannot power off); panic=-1 makes a panic a reboot, i.e. an exit, instead of a hang.
 */
export function buildKernelCmdline(spec: KernelCmdlineSpec): string {
  const words = [
    "console=hvc0",
    `root=${spec.rootTag}`,
    "rootfstype=virtiofs",
    "rw",
    `init=${spec.init}`,
    "reboot=t",
    "panic=-1",
    "quiet",
  ];
  if (spec.accel === "tcg" && spec.tscKhz !== undefined) {
    if (!Number.isInteger(spec.tscKhz) || spec.tscKhz <= 0) throw invalid(`tsc_early_khz must be a positive integer, got ${spec.tscKhz}`);
    words.push(`tsc_early_khz=${spec.tscKhz}`);
  }
  if (spec.accel === "tcg" && (spec.vcpus ?? 1) > 1) words.push(...TCG_SMP_BOOT_WORDS);
  if (spec.accel === "tcg" && spec.tcgTuning !== false) words.push(...((spec.vcpus ?? 1) > 1 ? TCG_BOOT_TUNING_SMP : TCG_BOOT_TUNING));
  for (const word of spec.extra ?? []) {
    if (!word || /[\s"\x00-\x1f]/.test(word)) throw invalid(`kernel command line word ${JSON.stringify(word)} must be non-empty without spaces, quotes or control characters`);
    words.push(word);
  }
  const env = Object.entries(spec.env ?? {});
  if (env.length > MAX_CMDLINE_ENV) throw invalid(`${env.length} env entries on the kernel command line; the kernel passes at most ${MAX_CMDLINE_ENV} to init`);
  for (const [key, value] of env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw invalid(`env name ${JSON.stringify(key)} is not a valid kernel command line variable`);
    // The kernel's parser understands "…" around a value (and strips the quotes) but has no escape for a
    // quote inside one; newlines and other control characters would end the argument.
    if (/["\x00-\x1f\x7f]/.test(value)) throw invalid(`env ${key}: the kernel command line cannot carry double quotes or control characters`);
    words.push(/[\s]/.test(value) || value === "" ? `${key}="${value}"` : `${key}=${value}`);
  }
  const cmdline = words.join(" ");
  // QEMU's microvm appends virtio_mmio.device=… entries (about 45 bytes per device) to what we pass.
  if (Buffer.byteLength(cmdline) > MAX_KERNEL_CMDLINE_BYTES - 512) {
    throw invalid(`kernel command line is ${Buffer.byteLength(cmdline)} bytes; at most ${MAX_KERNEL_CMDLINE_BYTES - 512} leave room for QEMU's device entries`);
  }
  return cmdline;
}

/**
 * TCG's translation cache, in MiB. QEMU 7.2's default is 1 GiB, filled as the guest runs new code and never
 * given back: most of an idle TCG VM's host RSS beyond its guest memory (QEMU 341 MiB for a 128 MiB guest).
 * Measured with worker/bench/density and bench/boot (README): see TCG_TB_SIZE_MIB's note there.
 */
export const TCG_TB_SIZE_MIB = 64;

export interface QemuArgvSpec {
  kernelPath: string;
  cmdline: string;
  accel: Accel;
  /** TCG only: the translation cache in MiB (default TCG_TB_SIZE_MIB). */
  tcgTbSizeMiB?: number;
  vcpus: number;
  memoryBytes: number;
  /** Root first; each with the vhost-user socket its virtiofsd listens on. */
  shares: Array<{ tag: string; socketPath: string }>;
  consoleLogPath: string;
  consoleAppend?: boolean;
  /** The console goes to this socket (QEMU dials it) instead of consoleLogPath. */
  consoleSocketPath?: string;
  control?: VmControlPort;
  network?: VmNetwork;
  qmpSocketPath: string;
  /** What QEMU may do once the VM is set up (qemu-confine.ts), in the syntax of this QEMU. */
  confine?: QemuConfinement;
  dropSyntax?: QemuDropSyntax;
}

/**
 * `-smp`. Under TCG a VM that can have only one vCPU runs translated code without memory barriers or atomic
 * instructions (QEMU emits them only when max_cpus > 1: nothing else could observe the difference, it assumes).
 * But virtiofsd, another host process, shares the guest's rings: the guest's `mb()` between publishing its used
 * event index and re-reading the used index then orders nothing on the host, virtiofsd's store of a reply and the
 * guest's load pass each other, and both decide the other will act: a reply with no interrupt, and a guest waiting
 * on the file system forever (seen: `npm ci` stuck with four requests answered, `GET /debug/virtio` showing used =
 * avail, used_event behind, isr 0; test/worker-vm/virtiofs-notify.vm.test.ts reproduces it within seconds).
 * `maxcpus=2` makes QEMU translate for a parallel machine; the second vCPU is never present.
 */
function smpOption(spec: QemuArgvSpec): string {
  return spec.accel === "tcg" && spec.vcpus === 1 ? "1,maxcpus=2" : String(spec.vcpus);
}

/** The qemu-system-x86_64 argv for a microvm (without the binary itself). */
export function buildQemuArgv(spec: QemuArgvSpec): string[] {
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 255) throw invalid(`vCPUs must be an integer in 1..255, got ${spec.vcpus}`);
  if (!Number.isFinite(spec.memoryBytes) || spec.memoryBytes < 64 * MiB) throw invalid(`memory must be at least 64 MiB, got ${spec.memoryBytes} bytes`);
  if (spec.shares.length === 0) throw invalid("a VM needs its root share");
  const memoryMiB = Math.ceil(spec.memoryBytes / MiB);
  const argv = [
    // acpi=off: only then does microvm put virtio_mmio.device= on the kernel cmdline (the kernel has no
    // ACPI). Keep pic/pit/rtc: pic=off hangs the reboot, pit=off hangs the boot, rtc=off adds ~2 s.
    // memory-backend: vhost-user (virtiofsd) needs guest RAM it can map, i.e. a shared memfd.
    "-M", "microvm,acpi=off,x-option-roms=off,memory-backend=mem",
    "-accel", spec.accel === "tcg" ? `tcg,tb-size=${tbSize(spec.tcgTbSizeMiB)}` : spec.accel,
    // -cpu max under TCG: a Node PID 1 boots in ≈2.05 s vs ≈3.1 s with the default model (DESIGN §3).
    "-cpu", spec.accel === "kvm" ? "host" : "max",
    "-smp", smpOption(spec),
    "-m", `${memoryMiB}M`,
    "-object", `memory-backend-memfd,id=mem,size=${memoryMiB}M,share=on`,
    "-nodefaults", "-no-user-config", "-display", "none",
    // The guest's reboot ends QEMU (with reboot=t on the kernel side).
    "-no-reboot",
    // virtiofsd refuses legacy virtio ("virtio legacy devices aren't supported").
    "-global", "virtio-mmio.force-legacy=false",
    "-kernel", spec.kernelPath,
    "-append", spec.cmdline,
  ];
  spec.shares.forEach((share, i) => {
    argv.push("-chardev", `socket,id=fs${i},path=${opt(share.socketPath)}`);
    argv.push("-device", `vhost-user-fs-device,chardev=fs${i},tag=${opt(share.tag)}`);
  });
  argv.push("-device", "virtio-serial-device");
  if (spec.consoleSocketPath !== undefined) argv.push("-chardev", `socket,id=console,path=${opt(spec.consoleSocketPath)},server=off`);
  else argv.push("-chardev", `file,id=console,path=${opt(spec.consoleLogPath)}${spec.consoleAppend ? ",append=on" : ""}`);
  argv.push("-device", "virtconsole,chardev=console");
  if (spec.control) {
    const server = (spec.control.mode ?? "client") === "server" ? ",server=on,wait=off" : ",server=off";
    argv.push("-chardev", `socket,id=control,path=${opt(spec.control.socketPath)}${server}`);
    argv.push("-device", `virtserialport,chardev=control,name=${CONTROL_PORT_NAME}`);
  }
  if (spec.network) {
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(spec.network.mac)) throw invalid(`guest MAC ${spec.network.mac} is not aa:bb:cc:dd:ee:ff`);
    argv.push("-netdev", `stream,id=n0,server=off,addr.type=unix,addr.path=${opt(spec.network.socketPath)}`);
    argv.push("-device", `virtio-net-device,netdev=n0,mac=${spec.network.mac}`);
  }
  argv.push("-chardev", `socket,id=qmp,path=${opt(spec.qmpSocketPath)},server=on,wait=off`);
  argv.push("-mon", "chardev=qmp,mode=control");
  argv.push(...confinementArgs(spec.confine, spec.dropSyntax));
  return argv;
}

export interface VirtiofsdArgvSpec {
  share: VmShare;
  socketPath: string;
  /** VM-wide virtiofsd cache mode, for shares without their own; `auto` (default) lets the guest cache for a second, `always` caches until told. */
  cache?: "auto" | "always" | "none";
  /**
   * Serve a socket that is already listening, inherited as this descriptor (`--fd=N`), instead of creating
   * `socketPath` (QemuVmm.startEarly: QEMU dials it before virtiofsd runs).
   */
  listenFd?: number;
}

/** virtiofsd xattr mapping: guest trusted.* ↔ @iii/filesystem's stored form user.iii.x.trusted.*; the rest as is. */
export const VIRTIOFS_XATTRMAP = ":prefix:all:trusted.:user.iii.x.::ok:all:::";

/**
 * `[binary, ...args]` for one share. QEMU 7.2's C virtiofsd has no read-only option, so a read-only share
 * runs it inside its own mount namespace on a read-only bind mount of the directory: the guest gets EROFS
 * from the host kernel, whatever it does with its own mount flags. `unshare` execs, so the pid stays
 * virtiofsd's.
 */
export function buildVirtiofsdCommand(virtiofsdPath: string, spec: VirtiofsdArgvSpec): string[] {
  validateTag(spec.share.tag);
  const args = [
    spec.listenFd !== undefined ? `--fd=${spec.listenFd}` : `--socket-path=${spec.socketPath}`,
    "-o", `source=${spec.share.hostDir}`,
    "-o", `cache=${spec.share.cache ?? spec.cache ?? "auto"}`,
    ...(spec.share.timeoutSec !== undefined ? ["-o", `timeout=${spec.share.timeoutSec}`] : []),
    // xattrs on: the guest's trusted.* travel as @iii/filesystem's stored form (user.iii.x.trusted.*), since
    // virtiofsd lacks the CAP_SYS_ADMIN the host kernel wants for trusted.*; every other name passes as is.
    ...(spec.share.xattr ? ["-o", `xattrmap=${VIRTIOFS_XATTRMAP}`] : []),
    "-o", "sandbox=namespace",
    "-o", "log_level=warn",
  ];
  if (!spec.share.readOnly) return [virtiofsdPath, ...args];
  return [
    "unshare", "--mount", "--propagation", "private", "--",
    "/bin/sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"',
    spec.share.hostDir, virtiofsdPath, ...args,
  ];
}

/** The descriptor a virtiofsd started on an inherited listening socket finds it at. */
export const VIRTIOFSD_LISTEN_FD = 3;

export function validateTag(tag: string): void {
  if (!tag || Buffer.byteLength(tag) > MAX_VIRTIOFS_TAG_BYTES || !/^[A-Za-z0-9_.-]+$/.test(tag)) {
    throw invalid(`virtio-fs tag ${JSON.stringify(tag)} must be 1..${MAX_VIRTIOFS_TAG_BYTES} bytes of [A-Za-z0-9_.-]`);
  }
}

const MiB = 1024 * 1024;

function tbSize(value: number | undefined): number {
  const v = value ?? TCG_TB_SIZE_MIB;
  if (!Number.isInteger(v) || v < 1 || v > 4096) throw invalid(`TCG translation cache must be an integer of 1..4096 MiB, got ${v}`);
  return v;
}

/** QEMU option values separate on commas; a literal comma is written twice. */
function opt(value: string): string {
  return value.replaceAll(",", ",,");
}

function invalid(message: string): IiiError {
  return new IiiError("InvalidOption", message);
}

/** What a VM's command lines depend on besides its config: the host's choices, made once per start. */
export interface VmHostChoices {
  accel: Accel;
  virtiofsdPath: string;
  confine?: QemuConfinement;
  dropSyntax?: QemuDropSyntax;
  /** The host TSC frequency (TCG only; the kernel skips its calibration). */
  tscKhz?: number;
}

export interface VmCommands {
  /** qemu-system-x86_64's argv (without the binary). */
  argv: string[];
  /**
   * One virtiofsd per share, root first, with the vhost-user socket it listens on: `command` creates that
   * socket, `fdCommand` serves it already listening, inherited as fd 3.
   */
  daemons: Array<{ share: VmShare; socketPath: string; command: string[]; fdCommand: string[] }>;
  qmpSocketPath: string;
}

/**
 * A VM config → QEMU's argv and the virtiofsd command lines, with no I/O: what QemuVmm.prepare() spawns,
 * and what launch/plan.test.ts checks for a worker spec.
 */
export function buildVmCommands(
  config: VmConfig & { consoleAppend?: boolean; virtiofsdCache?: "auto" | "always" | "none"; tcgTuning?: boolean },
  host: VmHostChoices,
): VmCommands {
  const shares = [config.root, ...(config.shares ?? [])];
  const daemons = shares.map((share, i) => {
    const socketPath = join(config.runDir, `fs${i}.sock`);
    const spec = { share, socketPath, cache: config.virtiofsdCache };
    return {
      share,
      socketPath,
      command: buildVirtiofsdCommand(host.virtiofsdPath, spec),
      fdCommand: buildVirtiofsdCommand(host.virtiofsdPath, { ...spec, listenFd: VIRTIOFSD_LISTEN_FD }),
    };
  });
  const qmpSocketPath = join(config.runDir, "qmp.sock");
  const cmdline = buildKernelCmdline({
    rootTag: config.root.tag,
    init: config.init ?? GUEST_PATHS.init,
    accel: host.accel,
    tscKhz: host.accel === "tcg" ? host.tscKhz : undefined,
    tcgTuning: config.tcgTuning,
    vcpus: config.vcpus,
    extra: config.cmdlineExtra,
    env: config.env,
  });
  const argv = buildQemuArgv({
    kernelPath: config.kernelPath,
    cmdline,
    accel: host.accel,
    ...(config.tcgTbSizeMiB !== undefined ? { tcgTbSizeMiB: config.tcgTbSizeMiB } : {}),
    vcpus: config.vcpus,
    memoryBytes: config.memoryBytes,
    shares: daemons.map((d) => ({ tag: d.share.tag, socketPath: d.socketPath })),
    consoleLogPath: config.consoleLogPath,
    consoleAppend: config.consoleAppend,
    ...(config.consoleSocketPath !== undefined ? { consoleSocketPath: config.consoleSocketPath } : {}),
    control: config.control,
    network: config.network,
    qmpSocketPath,
    ...(host.confine ? { confine: host.confine } : {}),
    ...(host.dropSyntax ? { dropSyntax: host.dropSyntax } : {}),
  });
  return { argv, daemons, qmpSocketPath };
}

