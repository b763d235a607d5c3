// Public API of @iii/init for the host side (the supervisor in @iii/worker):
// the control protocol and the guest-contract encoder. The guest PID 1 itself
// is dist/init.krun, one static ELF built from src/static (build:static).

export * as protocol from "./protocol/index.js";
export { HostControl, ProtocolVersionError, PROTOCOL_VERSION, CONTROL_PORT_NAME } from "./protocol/index.js";
export type { ExecSession, ExecRequest, ExitMessage, ReadyMessage, WorkloadExitMessage } from "./protocol/index.js";
export {
  ENV,
  ContractError,
  decodeGuestEnv,
  encodeGuestEnv,
  encodeEnvFile,
  encodeKernelCmdlineEnv,
  mergeEnvSources,
} from "./contract/env.js";
export type { GuestSpec, GuestConfig, GuestMount, GuestNetwork } from "./contract/env.js";
export {
  CAPABILITY_NAMES,
  DEFAULT_CAPABILITIES,
  capabilityName,
  resolveCapabilities,
  sameCapabilities,
  type CapabilityName,
} from "./contract/capabilities.js";
export { ExitCode, InitError } from "./errors.js";
// /etc/passwd parsing, shared with the worker's reading of an image's `User` (one parser, one set of rules).
export { parsePasswd, type PasswdEntry } from "./portable/users.js";
export type { ExitCodeName } from "./errors.js";

/**
 * Where the filesystem view injects init and its configuration: `/init.krun` (the static ELF, nothing beside
 * it) and the contract file in `/.iii/`, the directory no share may hide.
 */
export const GUEST_PATHS = {
  init: "/init.krun",
  runtimeDir: "/.iii",
  envFile: "/.iii/env.json",
} as const;
