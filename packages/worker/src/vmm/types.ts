import type { IiiError } from "../errors.js";
import type { Accel, AccelChoice } from "./accel.js";

/** A host directory served to the guest over virtio-fs by its own virtiofsd. */
export interface VmShare {
  /** virtio-fs tag the guest mounts (`mount -t virtiofs <tag> <dir>`); at most 36 bytes. */
  tag: string;
  hostDir: string;
  /** Enforced on the host: virtiofsd serves a read-only bind mount of `hostDir`. */
  readOnly?: boolean;
  /**
   * virtiofsd cache mode for this share. `auto` (the default) re-validates after a second and drops the guest's
   * page cache of a file on every open: right for a directory the host edits (dev mode's /workspace). `always`
   * keeps pages and attributes until the guest itself changes them: right when the guest is the only writer.
   */
  cache?: "auto" | "always" | "none";
  /** How long the guest trusts a name or attributes before asking again (virtiofsd `timeout`); default per `cache`. */
  timeoutSec?: number;
  /**
   * Serve extended attributes (virtiofsd `xattr`). Only for a share whose host side is our FUSE view, which
   * keeps the guest's `security.*`/`trusted.*` names off the host file; never for a raw host directory.
   */
  xattr?: boolean;
}

export interface VmNetwork {
  /** Unix stream socket the network stack listens on; QEMU connects as the client. Frames: 4-byte BE length + Ethernet frame. */
  socketPath: string;
  /** Guest MAC, `52:54:00:12:34:56`. */
  mac: string;
}

export interface VmControlPort {
  /** Unix socket of the `iii.control` virtserialport. */
  socketPath: string;
  /**
   * `client` (default): the host listens first and QEMU connects during its start-up, so no guest byte can be
   * written before the host end exists. `server`: QEMU listens (wait=off) and the host connects later.
   */
  mode?: "client" | "server";
}

/** What one VM needs; everything the adapter creates goes under `runDir`. */
export interface VmConfig {
  /** Used in error messages and process titles. */
  name: string;
  /** The PVH ELF kernel (from `ensureKernel`). */
  kernelPath: string;
  /** The root filesystem directory (for iii: the @iii/filesystem mountpoint). */
  root: VmShare;
  /** Extra shares, mounted by the guest init. */
  shares?: VmShare[];
  vcpus: number;
  memoryBytes: number;
  /** Guest init path (default `/init.krun`). */
  init?: string;
  /** Extra kernel command line words, appended before the env entries. */
  cmdlineExtra?: string[];
  /** Environment for init, passed on the kernel command line (`KEY=value`). */
  env?: Record<string, string>;
  network?: VmNetwork;
  /** File the guest console (hvc0) is written to. */
  consoleLogPath: string;
  /**
   * A socket the owner listens on before QEMU starts: QEMU dials it and writes the console there instead of into
   * consoleLogPath, and the owner keeps the file (bounded: a guest writing /dev/console without end must not
   * fill the host's disk). Without it QEMU appends to consoleLogPath itself (tests, the boot bench's floor).
   */
  consoleSocketPath?: string;
  control?: VmControlPort;
  /** Directory for the adapter's own files: QMP and virtiofsd sockets, qemu/virtiofsd stderr logs. */
  runDir: string;
  /** Default from `chooseAccel(probeAccelFacts())`. */
  accel?: Accel;
  /** TCG's translation cache in MiB (`-accel tcg,tb-size=N`); default TCG_TB_SIZE_MIB. */
  tcgTbSizeMiB?: number;
  /** Host TSC frequency for `tsc_early_khz` under TCG; default measured from /proc/cpuinfo. */
  tscKhz?: number;
  qemuPath?: string;
  virtiofsdPath?: string;
  /**
   * The VM's CPU bandwidth enforced on the host: QEMU runs in its own cgroup (`iii/<cgroupName>`) with a quota of
   * `cpus` CPUs (host/cpu-cgroup.ts), which the guest cannot lift. Without it QEMU may use all its vCPUs.
   */
  cpuQuota?: { cgroupName: string; cpus: number };
  /** Where the QEMU binary's drop syntax (`-runas` or `-run-with`) is remembered between starts. */
  qemuProbeCacheDir?: string;
  /**
   * Called when a device daemon (virtiofsd) exits while QEMU still runs and no stop was asked for: the guest's
   * I/O on that share now hangs, so the owner should end the VM.
   */
  onDaemonExit?: (daemon: VmProcess, exit: { code: number | null; signal: NodeJS.Signals | null }) => void;
  /**
   * Called right after the adapter spawned processes (QEMU, the virtiofsd's), before it waits for them: an owner
   * that records processes() for its crash cleanup must not learn of them only once the VM is up (a supervisor
   * killed while QEMU never answered left its virtiofsd's running, out of every command's reach).
   */
  onSpawned?: () => void;
}

/** A process the adapter spawned, with what a supervisor records to find it again after a crash. */
export interface VmProcess {
  role: "qemu" | "virtiofsd";
  /** For virtiofsd: the share tag it serves. */
  tag?: string;
  pid: number;
  /** Clock ticks since boot (field 22 of /proc/<pid>/stat); see host/process-identity.ts. */
  startTime: number;
  argv: string[];
}

/** Why the VM ended, from QMP events and the QEMU process. */
export interface VmExit {
  /**
   * QMP SHUTDOWN reason: `guest-reset` (init rebooted, the normal end with reboot=t -no-reboot),
   * `guest-panic`, `guest-shutdown`, `host-qmp-quit`, `host-signal`, …; `unknown` without a QMP event;
   * `kvm-failed` (KVM could not run the guest), `internal-error` (QEMU paused on an internal error and the
   * adapter killed it), `qemu-crashed` (QEMU exited non-zero or by a signal it did not handle).
   */
  reason: string;
  /** QEMU's exit code (always 0 for guest-initiated ends; DESIGN §3) and signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** QMP events seen, in order (`SHUTDOWN`, `RESET`, `GUEST_PANICKED`, `STOP`, …). */
  events: Array<{ event: string; data?: unknown; atMs: number }>;
  /** ms from QEMU spawn to its exit. */
  uptimeMs: number;
  /**
   * Set when the adapter saw the VM fail rather than end: KvmUnavailable (KVM forced and QEMU could not run
   * the guest), VmBootFailed (QEMU stopped with an internal error or exited with an error of its own).
   */
  error?: import("../errors.js").IiiError;
}

/** One VM's lifecycle. */
export interface Vmm extends AsyncDisposable {
  readonly kind: "qemu" | "libkrun";
  /** Checks binaries and inputs and computes the command lines; spawns nothing. */
  prepare(): Promise<void>;
  /**
   * Optional: spawns the VMM before its device daemons, which start() then spawns: their start-ups overlap. The
   * sockets the VMM dials (control, network) must be listening.
   */
  startEarly?(): Promise<void>;
  /** Spawns the device daemons and the VMM (or, after startEarly(), the daemons); resolves once the VMM runs (QMP is up). */
  start(): Promise<void>;
  /** Resolves when the VM has ended. */
  wait(): Promise<VmExit>;
  /** Ends the VM (and its daemons) if still running: ask, then SIGTERM, then SIGKILL after `timeoutMs`. */
  stop(options?: { timeoutMs?: number }): Promise<VmExit>;
  /** Stops everything and removes what the adapter created in `runDir`. Idempotent. */
  cleanup(): Promise<void>;
  /** The spawned processes, for a supervisor's record. */
  processes(): VmProcess[];
  /** The failure the adapter detected (KvmUnavailable, VmBootFailed), if any. */
  readonly failure: IiiError | undefined;
  /** How the VMM process runs confined once prepared, in a few words for the supervisor's log. */
  readonly confinementSummary?: string;
  /**
   * Optional: each vCPU's registers as the VMM prints them, read without the guest's help: where a guest that
   * answers nothing is spinning (its instruction pointer, privilege level, halted or not).
   */
  vcpuRegisters?(): Promise<string>;
  /**
   * Optional: each virtio device's interrupt status and each queue's ring indexes read from guest memory (avail
   * and used index, the event indexes): a request the guest waits on that the device answered (used ahead of what
   * the guest took, no interrupt pending) is a lost notification; one the device never took is a lost kick.
   */
  virtioState?(): Promise<VirtioDeviceState[]>;
}

export interface VirtioQueueRing {
  queue: number;
  size: number;
  /** The driver's next index into the avail ring, and its used_event (interrupt me once used passes it). */
  availIdx: number;
  usedEvent: number;
  /** The device's next index into the used ring, and its avail_event (kick me once avail passes it). */
  usedIdx: number;
  availEvent: number;
  availFlags: number;
  usedFlags: number;
  /** QEMU's own view of a queue it serves itself (not a vhost-user device's). */
  device?: { lastAvailIdx: number; usedIdx: number; signalledUsed: number; inuse: number };
}

export interface VirtioDeviceState {
  path: string;
  name: string;
  /** The device's interrupt status register: non-zero while an interrupt is raised and not acknowledged. */
  isr: number;
  /** Whether the driver negotiated VIRTIO_RING_F_EVENT_IDX (event indexes instead of the rings' flags). */
  eventIdx?: boolean;
  queues: VirtioQueueRing[];
  error?: string;
}

/** What every VMM adapter is built from: the VM's config and the host's choices made once per start. */
export interface VmmOptions extends VmConfig {
  /** Append to the console log instead of truncating it. */
  consoleAppend?: boolean;
  /** The accel chosen (with its reason) by whoever probed the host already (`start`); else prepare() probes. */
  accelChoice?: AccelChoice;
  /** Environment for binary lookup (III_QEMU_BIN, III_VIRTIOFSD_BIN, PATH) and the accel choice (III_ACCEL). */
  hostEnv?: NodeJS.ProcessEnv;
}

/** Makes the VMM of a run; the supervisor knows only this and the Vmm interface (a second adapter is a new factory). */
export type VmmFactory = (options: VmmOptions) => Vmm;
