export {
  DEFAULT_ENGINE_PORT,
  DEFAULT_INVOCATION_TIMEOUT_MS,
  InvocationFailedError,
  RegistrationFeed,
  startEngineStandin,
  type EngineStandin,
  type EngineStandinOptions,
  type FunctionRegistration,
  type StandinEvent,
  type WorkerInfo,
} from "./engine-standin.js";
export { formatEvent } from "./format.js";
export { parseWorkerMessage, ProtocolError, type EngineToWorker, type ErrorBody, type WorkerToEngine } from "./protocol.js";
export { runCli, USAGE, type CliIo } from "./run-cli.js";
