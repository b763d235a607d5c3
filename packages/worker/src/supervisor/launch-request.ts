import type { WorkerSpec } from "../state/model.js";
import type { ImageProcessConfig } from "./launch-spec.js";

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
}
