export { locateWorker, type WorkerCommand } from "./locate-worker.js";
export { exitStatus, runWorker, runWorkerInProcess, WorkerNotFoundError, type RunWorkerOptions } from "./run-worker.js";
export { startManagedWorkers, stopManagedWorkers } from "./lifecycle.js";
