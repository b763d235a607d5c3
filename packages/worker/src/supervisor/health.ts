import { rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { HostControl } from "@iii/init";
import { IiiError } from "../errors.js";
import { writeJsonAtomic } from "../util/atomic-write.js";

/** What health.json holds while the supervisor watches a running guest; status.ts reads it. */
export interface HealthRecord {
  state: "healthy" | "unhealthy";
  /** Why the guest counts as unhealthy (absent when healthy). */
  reason?: string;
  /** When the current state began (ISO time). */
  since: string;
}

export interface HealthOptions {
  /** Time between pings. */
  intervalMs: number;
  /** How long one ping may take. */
  timeoutMs: number;
  /** Unanswered pings in a row that make the guest unhealthy. */
  misses: number;
}

export const DEFAULT_HEALTH: HealthOptions = { intervalMs: 10_000, timeoutMs: 5_000, misses: 3 };

const ENV_NAMES: Record<keyof HealthOptions, string> = {
  intervalMs: "III_HEALTH_INTERVAL_MS",
  timeoutMs: "III_HEALTH_TIMEOUT_MS",
  misses: "III_HEALTH_MISSES",
};

/** The health check's timing, from III_HEALTH_INTERVAL_MS / III_HEALTH_TIMEOUT_MS / III_HEALTH_MISSES. */
export function healthOptionsFrom(env: NodeJS.ProcessEnv): HealthOptions {
  const options = { ...DEFAULT_HEALTH };
  for (const key of Object.keys(ENV_NAMES) as (keyof HealthOptions)[]) {
    const text = env[ENV_NAMES[key]];
    if (text === undefined || text === "") continue;
    const value = Number(text);
    if (!Number.isSafeInteger(value) || value < 1) throw new IiiError("InvalidOption", `${ENV_NAMES[key]} must be a positive integer, got "${text}"`);
    options[key] = value;
  }
  return options;
}

/**
 * Pings init over the control channel for as long as the guest runs. A guest whose init stops answering (a wedged
 * kernel, a stopped QEMU, an init stuck in a system call) still looks alive to `status` by its processes alone;
 * after `misses` unanswered pings in a row the supervisor writes health.json as unhealthy, with the reason, and
 * as healthy again once init answers. Returns the function that stops the watch and removes the file.
 */
export function watchHealth(control: HostControl, file: string, options: HealthOptions, log: (line: string) => void): () => Promise<void> {
  const stop = new AbortController();
  let writing: Promise<void> = Promise.resolve();
  const record = (value: HealthRecord) => {
    writing = writing.then(() => (stop.signal.aborted ? undefined : writeJsonAtomic(file, value, { fsync: false }))).catch((error: unknown) => log(`health: ${(error as Error).message}`));
  };
  void (async () => {
    let missed = 0;
    let firstMissAt = 0;
    let unhealthy = false;
    while (!stop.signal.aborted) {
      await sleep(options.intervalMs, undefined, { ref: false, signal: stop.signal });
      const answered = await control.ping(options.timeoutMs).then(
        () => true,
        () => false,
      );
      if (stop.signal.aborted) break;
      if (answered) {
        missed = 0;
        if (unhealthy) {
          unhealthy = false;
          log("health: init answers again");
          record({ state: "healthy", since: new Date().toISOString() });
        }
        continue;
      }
      if (missed++ === 0) firstMissAt = Date.now() - options.timeoutMs;
      if (missed >= options.misses && !unhealthy) {
        unhealthy = true;
        const seconds = Math.round((Date.now() - firstMissAt) / 1000);
        const reason = `init has not answered the control channel for ${seconds} s (${missed} pings of ${options.timeoutMs} ms unanswered)`;
        log(`health: unhealthy: ${reason}`);
        record({ state: "unhealthy", reason, since: new Date(firstMissAt).toISOString() });
      }
    }
  })().catch((error: unknown) => {
    if (!stop.signal.aborted) log(`health: the watch failed: ${(error as Error).message}`);
  });
  return async () => {
    stop.abort();
    await writing;
    await rm(file, { force: true });
  };
}
