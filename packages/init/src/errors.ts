// Exit codes of init's own failures. Outside a VM init otherwise exits with the
// workload's status (code, or 128 + signal); inside a VM it reboots and the
// status travels over the control channel and the last console line.

export const ExitCode = {
  /** Unexpected internal error. */
  InitInternal: 70,
  /** A required pseudo-filesystem (/proc, /sys, /dev, /dev/pts, /dev/shm, /tmp, /run) failed to mount. */
  MountRoot: 71,
  /** An III_MOUNTS share failed to mount. */
  MountShare: 72,
  /** eth0 configuration failed. */
  NetworkSetup: 73,
  /** setrlimit failed. */
  Rlimit: 74,
  /** The workload's user, group or workdir does not resolve. */
  WorkloadSetup: 75,
  /** The workload could not be spawned. */
  Spawn: 76,
  /** Invalid guest contract (III_* environment). */
  BadEnv: 78,
} as const;

export type ExitCodeName = keyof typeof ExitCode;

/** A failed boot step: one line naming the step and the errno. */
export class InitError extends Error {
  readonly code: ExitCodeName;
  readonly exitCode: number;
  constructor(code: ExitCodeName, readonly step: string, message: string, options?: { cause?: unknown }) {
    super(`${step}: ${message}`, options);
    this.name = "InitError";
    this.code = code;
    this.exitCode = ExitCode[code];
  }
}
