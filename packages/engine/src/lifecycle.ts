import { runWorker, type RunWorkerOptions } from "./run-worker.js";

/** Starts every worker in ./iii.workers.yaml for an engine listening at `engineUrl`; resolves with the exit status. */
export function startManagedWorkers(engineUrl: string, options: RunWorkerOptions = {}): Promise<number> {
  return runWorker(["start-all", "--engine-url", engineUrl], options);
}

/** Stops every managed worker of ./iii.workers.yaml; resolves with the exit status. */
export function stopManagedWorkers(options: RunWorkerOptions = {}): Promise<number> {
  return runWorker(["stop-all"], options);
}
