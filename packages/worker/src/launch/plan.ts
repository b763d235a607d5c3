/**
 * read → plan → apply: a launch request becomes everything the supervisor's phases do (the FUSE mounts, the
 * network stack, the guest's contract, the VM), computed here without I/O so "spec → argv" is a unit test.
 */
import { dirname, join, resolve } from "node:path";
import type { MountOptions, VirtualFileSource } from "@iii/filesystem";
import { encodeEnvFile, GUEST_PATHS, type GuestSpec } from "@iii/init";
import { ipToString, slotAddresses, type NetworkStackOptions } from "@iii/network";
import { IiiError } from "../errors.js";
import type { WorkerPaths } from "../paths.js";
import type { VmmOptions } from "../vmm/types.js";
import { cgroupNameFor } from "../host/cpu-cgroup.js";
import { policyRules } from "./policy-rules.js";
import { assertRootClearOfIii, assertSharesClearOfIii, hostActedPaths, iiiCodePaths } from "./share-safety.js";
import type { LaunchRequest } from "./request.js";
import { buildLaunchSpec, type LaunchSpec } from "./spec.js";

/** The virtio-fs tag of the guest's root filesystem. */
export const ROOT_TAG = "rootfs";

/** What planVm needs besides the request: the run's slot and paths. */
export interface PlanContext {
  slot: number;
  paths: WorkerPaths;
  /** DNS upstreams for the guest's resolver (III_DNS_UPSTREAM), if set. */
  dnsUpstreams?: string[];
}

export interface SharePlan {
  guest: string;
  host: string;
  readOnly: boolean;
  /** A writable share is served to virtiofsd through its own FUSE view (absent for a read-only one). */
  mount?: MountOptions;
}

export interface VmPlan {
  launch: LaunchSpec;
  addresses: { gateway: string; guest: string; guestMac: string };
  mount: {
    /** Discard the writable layer before mounting. */
    fresh: boolean;
    root: MountOptions;
    shares: SharePlan[];
  };
  network: Omit<NetworkStackOptions, "log">;
  guest: GuestSpec;
  /** The VM, less what the supervisor adds at run time (its crash callback, the host environment). */
  vm: VmmOptions;
}

/**
 * What keeps an idle worker's FUSE servers asleep (idle CPU per VM, issue 13): no request counters pushed on a
 * timer (nothing in the worker reads them), and the external-unmount check every 5 s instead of every second.
 */
const QUIET_SERVER = { statsPushMs: 0, watchIntervalMs: 5000 } as const;

/** The guest's addresses in a slot, as @iii/network assigns them. */
export function guestAddresses(slot: number): VmPlan["addresses"] {
  const a = slotAddresses(slot);
  return { gateway: ipToString(a.gatewayIp), guest: ipToString(a.guestIp), guestMac: [...a.guestMac].map((b) => b.toString(16).padStart(2, "0")).join(":") };
}

export function planVm(request: LaunchRequest, context: PlanContext): VmPlan {
  const { slot, paths } = context;
  const addresses = guestAddresses(slot);
  const launch = buildLaunchSpec({
    name: request.name,
    spec: request.spec,
    rootfs: request.rootfs,
    ...(request.image ? { image: request.image } : {}),
    engineUrl: request.engineUrl,
    gateway: addresses.gateway,
    fresh: request.fresh,
    accel: request.host.accel.accel,
  });
  const mountTags = launch.mounts.map((_, i) => `iii-m${i}`);

  const guest: GuestSpec = {
    cmd: launch.argv,
    workdir: launch.workdir,
    user: launch.user,
    network: { ip: addresses.guest, gateway: addresses.gateway, prefixLength: 30, dns: [addresses.gateway], mtu: 1500 },
    memoryBytes: launch.memoryBytes,
    pidsMax: launch.pidsMax,
    ...(launch.capabilities ? { capabilities: launch.capabilities } : {}),
    ...(launch.cpuLimit !== undefined ? { cpus: launch.cpuLimit } : {}),
    hostname: launch.name,
    mounts: launch.mounts.map((m, i) => ({ tag: mountTags[i]!, path: m.guest, readOnly: m.readOnly })),
    env: launch.env,
  };

  const virtualFiles: Record<string, VirtualFileSource> = { [GUEST_PATHS.init]: { hostPath: request.host.guestInit.init } };
  // The guest's contract travels as a file of its root (init reads it), not on the kernel command line.
  virtualFiles[GUEST_PATHS.envFile] = { content: encodeEnvFile(guest) };

  // Writable shares reach virtiofsd only through our FUSE view, never as the raw host directory: what
  // the guest makes there (setuid bits, device nodes, file capabilities, its owners) stays metadata in an
  // xattr, and new files belong on the host to the directory's owner.
  const home = dirname(dirname(dirname(paths.dir))); // <home>/managed/<project key>/<name>
  assertRootClearOfIii(launch.rootfs, home);
  // iii's code paths (a walk of this package's dependency closure, ~12-20 ms) matter only to a writable share.
  const codePaths = launch.mounts.some((m) => !m.readOnly) ? iiiCodePaths([request.host.qemuPath, request.host.virtiofsdPath]) : [];
  assertSharesClearOfIii(launch.mounts, home, codePaths);
  const shares: SharePlan[] = launch.mounts.map((m, i) => {
    if (m.readOnly) return { guest: m.guest, host: m.host, readOnly: true };
    const mountpoint = join(paths.dir, "shares", String(i));
    // The host edits a share while the guest runs (dev mode's /workspace): no caching in the host kernel,
    // so the guest sees an edit at its next open. A share only the guest writes keeps the default cache.
    const cache = m.cache === "always" ? {} : { cache: { entryTimeoutSec: 0, attrTimeoutSec: 0, negativeTimeoutSec: 0, kernelCache: false } };
    // stableInodes (a file's number the same at every mount, so a guest `git status` in dev mode's /workspace
    // finds its index up to date after a restart) on every writable share. A file or directory the host renames
    // keeps its number; while virtiofsd still holds the old name's node, @iii/filesystem's shim answers the new
    // name with a number of its own (else virtiofsd reused the old node, bound to the gone path: ENOENT in the
    // guest). Not on the root: a copy-up gives a name another number.
    const stableInodes = true;
    // No upperLimitBytes: a writable share is a host directory the user chose to hand over, not iii's to bound.
    const protectedPaths = hostActedPaths(m.host, request.cwd);
    return { guest: m.guest, host: m.host, readOnly: false, mount: { root: m.host, mountpoint, allowOther: true, stableInodes, protectedPaths, ...cache, ...QUIET_SERVER } };
  });

  return {
    launch,
    addresses,
    mount: {
      fresh: launch.fresh,
      // allowOther: virtiofsd takes on the guest caller's uid for each request, and FUSE refuses any uid but the
      // mounting one without it. The mountpoint is inside managed/ (0700): no host user reaches it either way.
      // upperLimitBytes: what the guest writes to its root lands in III_HOME on the host; past the bound it gets
      // ENOSPC (and `df /` shows the bound), so a hostile workload cannot fill the host's disk.
      root: {
        layers: { lower: launch.rootfs, upper: paths.upper },
        upperLimitBytes: launch.diskBytes,
        mountpoint: paths.mnt,
        virtualFiles,
        allowOther: true,
        ...QUIET_SERVER,
      },
      shares,
    },
    network: {
      slot,
      policy: { mode: launch.network.mode, hostPorts: launch.network.hostPorts, rules: policyRules(launch.network) },
      ports: launch.ports.map((p) => ({ hostPort: p.host, guestPort: p.guest })),
      ...(context.dnsUpstreams ? { dns: { upstreams: context.dnsUpstreams } } : {}),
      ...(request.capturePath ? { pcapPath: request.capturePath } : {}),
    },
    guest,
    vm: {
      name: request.name,
      kernelPath: request.host.kernelPath,
      // Only the guest writes its root while it runs, so its page cache stays valid across opens: a Node
      // workload restarted in dev mode no longer re-reads its 120 MB binary through virtio-fs and FUSE.
      root: { tag: ROOT_TAG, hostDir: paths.mnt, cache: "always", timeoutSec: 1, xattr: true },
      shares: launch.mounts.map((m, i) => ({
        tag: mountTags[i]!,
        hostDir: shares[i]!.mount?.mountpoint ?? m.host,
        readOnly: m.readOnly,
        xattr: !m.readOnly,
        ...(m.cache ? { cache: m.cache } : {}),
      })),
      vcpus: launch.vcpus,
      memoryBytes: launch.memoryBytes,
      cmdlineExtra: [`III_INIT_ENV_FILE=${GUEST_PATHS.envFile}`],
      network: { socketPath: paths.netSock, mac: addresses.guestMac },
      consoleLogPath: paths.consoleLog,
      consoleAppend: true,
      consoleSocketPath: paths.consoleSock,
      control: { socketPath: paths.controlSock, mode: "client" },
      runDir: paths.runtime,
      ...(launch.cpuLimit !== undefined ? { cpuQuota: { cgroupName: cgroupNameFor(paths.dir), cpus: launch.cpuLimit } } : {}),
      // The managed root (III_HOME/managed, 0700): remembers how this QEMU spells its privilege drop.
      qemuProbeCacheDir: resolve(paths.dir, "..", ".."),
      qemuPath: request.host.qemuPath,
      virtiofsdPath: request.host.virtiofsdPath,
      accelChoice: request.host.accel,
    },
  };
}
