import type { WorkerSpec } from "../state/model.js";
import type { AccelChoice } from "../vmm/accel.js";
import type { GuestInitFiles } from "./guest-init.js";
import type { ImageProcessConfig } from "./spec.js";

/** The grace a stop gives the workload when none is named (`stop`, `remove --force`, a SIGTERM to the supervisor). */
export const DEFAULT_STOP_GRACE_MS = 10_000;
/** How long `start` waits for READY: TCG boots take seconds; a cold image pull happens before this. */
export const DEFAULT_BOOT_TIMEOUT_MS = 120_000;

/** What `start` found on the host, once per start; the supervisor and the VMM use it as it is. */
export interface HostChoices {
  qemuPath: string;
  virtiofsdPath: string;
  accel: AccelChoice;
  /** The guest kernel (the PVH ELF extracted from libkrunfw, digest checked). */
  kernelPath: string;
  guestInit: GuestInitFiles;
}

/** What `start` hands the supervisor in `launch.json`: the worker as resolved in the project's directory. */
export interface LaunchRequest {
  name: string;
  /** The project directory whose iii.workers.yaml defines the worker. */
  cwd: string;
  spec: WorkerSpec;
  /** The read-only lower rootfs. */
  rootfs: string;
  image?: ImageProcessConfig;
  engineUrl: string;
  fresh: boolean;
  /** Default grace for a stop that does not name one. */
  stopGraceMs: number;
  bootTimeoutMs: number;
  /** `--capture FILE`: every frame of the guest's network (both directions) goes to this pcap file (absolute). */
  capturePath?: string;
  host: HostChoices;
}
