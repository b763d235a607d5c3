// The workload's Linux capabilities: names, the default set, Docker-style add/drop, and the mask init keeps in
// the bounding set of every workload and exec process. Portable (host and guest build compile it).

/** Capability names without `CAP_`, indexed by number (linux/capability.h, up to CAP_CHECKPOINT_RESTORE). */
export const CAPABILITY_NAMES = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
  "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
  "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
  "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
  "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
  "CHECKPOINT_RESTORE",
] as const;

export type CapabilityName = (typeof CAPABILITY_NAMES)[number];

/**
 * What root in the workload keeps unless the worker says otherwise: Docker's default set, what ordinary programs
 * need. Left out, among others: SYS_ADMIN (mounts, setns), SYS_PTRACE (PID 1's /proc/1/root), SYS_RAWIO (/dev/mem
 * and I/O ports: the guest kernel's memory and the devices' registers, so every in-guest limit), DAC_READ_SEARCH
 * (open_by_handle_at past read-only mounts), SYS_MODULE, BPF, PERFMON, SYS_BOOT, NET_ADMIN, SYS_TIME, SYS_RESOURCE.
 */
export const DEFAULT_CAPABILITIES: readonly CapabilityName[] = [
  "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
  "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SETFCAP",
];

/** `NET_ADMIN`, `net_admin` and `CAP_NET_ADMIN` name the same capability; undefined for an unknown name. */
export function capabilityName(text: string): CapabilityName | undefined {
  const upper = text.trim().toUpperCase();
  const bare = upper.startsWith("CAP_") ? upper.slice(4) : upper;
  return (CAPABILITY_NAMES as readonly string[]).includes(bare) ? (bare as CapabilityName) : undefined;
}

/**
 * The set after `--cap-add` / `--cap-drop`, as Docker computes it: `ALL` in the adds gives every capability but
 * the dropped ones; `ALL` in the drops gives exactly the adds; otherwise the default set minus the drops plus the
 * adds. Names must be canonical (capabilityName) or `ALL`. Sorted by number.
 */
export function resolveCapabilities(add: readonly string[], drop: readonly string[]): CapabilityName[] {
  let set: Set<string>;
  if (add.includes("ALL")) set = new Set(CAPABILITY_NAMES.filter((c) => !drop.includes(c)));
  else if (drop.includes("ALL")) set = new Set(add);
  else set = new Set([...DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c)), ...add]);
  return CAPABILITY_NAMES.filter((c) => set.has(c));
}

/** The bit mask of a set (bit n = capability n), exact as a double: the numbers stay below 2^53. */
export function capabilityMask(names: readonly CapabilityName[]): number {
  let mask = 0;
  for (const name of new Set(names)) mask += 2 ** CAPABILITY_NAMES.indexOf(name);
  return mask;
}

/** Whether two sets hold the same capabilities. */
export function sameCapabilities(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((c) => sb.has(c));
}
