import type { FilesystemErrorCode } from "@iii/filesystem";
import type { ProtocolVersionError, protocol } from "@iii/init";
import type { NetworkErrorCode } from "@iii/network";

/**
 * Every failure the worker surfaces to a user has a stable `code`. The CLI prints `message` as one line
 * (the stack only with --debug) and exits with `exitCode`.
 *
 * One spelling across the packages: PascalCase. The codes of the packages the worker runs (@iii/filesystem,
 * @iii/network, @iii/init's host side) share the CLI line with these, so they must not clash: a package
 * prefixes a code that would (init's `InitInternal`), and `NO_CLASH` below fails the typecheck if one does.
 */
export const ERROR_CODES = {
  UsageError: 2,
  InvalidReference: 1,
  InvalidWorkerName: 1,
  InvalidQuantity: 1,
  InvalidOption: 1,
  WorkerNotFound: 1,
  WorkerExists: 1,
  WorkerRunning: 1,
  RegistryLookupFailed: 1,
  StateFileCorrupt: 1,
  StateFileUnreadable: 1,
  StateFileUnwritable: 1,
  StateLockTimeout: 1,
  HomeUnwritable: 1,
  KvmUnavailable: 1,
  QemuNotFound: 1,
  VirtiofsdNotFound: 1,
  FirmwareNotFound: 1,
  FirmwareCorrupt: 1,
  FirmwareDownloadFailed: 1,
  RootfsNotFound: 1,
  ImagePullFailed: 1,
  ImageInvalid: 1,
  LayerRejected: 1,
  VmBootFailed: 1,
  QmpFailed: 1,
  WorkloadStartFailed: 1,
  VmNotRunning: 1,
  VmBooting: 1,
  ApiUnreachable: 1,
  ExecRejected: 1,
  NotImplemented: 1,
  NotApplicable: 1,
  WasmInvalid: 1,
  WasiConfigInvalid: 1,
  WasmStartFailed: 1,
  CpuLimitUnsupported: 1,
  // A start cancelled by SIGINT or SIGTERM (cli/start-interrupt.ts): 128 + SIGINT, as a shell reports it.
  Interrupted: 130,
  Internal: 70,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** A code owned by another package; it reaches the CLI line unchanged, exit status 1. */
export type ForeignErrorCode = FilesystemErrorCode | NetworkErrorCode | ProtocolVersionError["code"] | protocol.ChannelClosedError["code"] | protocol.ProtocolError["code"] | protocol.PingTimeoutError["code"];

const NO_CLASH: [Extract<ErrorCode, ForeignErrorCode>] extends [never] ? true : false = true;
void NO_CLASH;

export class IiiError extends Error {
  readonly code: ErrorCode | ForeignErrorCode;

  constructor(code: ErrorCode | ForeignErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "IiiError";
    this.code = code;
  }

  get exitCode(): number {
    return isWorkerCode(this.code) ? ERROR_CODES[this.code] : 1;
  }
}

export function isWorkerCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERROR_CODES, code);
}

/** A code another package's typed error carries: PascalCase, on an Error subclass (not a Node errno code). */
function typedCode(error: Error): ErrorCode | ForeignErrorCode | undefined {
  const code = errnoCode(error);
  return code && error.name !== "Error" && isErrorCode(code) ? code : undefined;
}

/** Whether `code` may travel (in a boot report) as an IiiError's code: the worker's own, or a package's PascalCase one. */
export function isErrorCode(code: unknown): code is ErrorCode | ForeignErrorCode {
  return typeof code === "string" && (isWorkerCode(code) || /^[A-Z][a-z]\w*$/.test(code));
}

/**
 * Any error as an IiiError: an IiiError itself; a typed error of another package (`FilesystemError`,
 * `NetworkError`, init's protocol errors) keeps its code and becomes the cause, so the CLI line names it;
 * anything else (a Node errno error, a bug) becomes `fallback`, with the error as cause.
 */
export function toIiiError(error: unknown, fallback: ErrorCode = "Internal"): IiiError {
  if (error instanceof IiiError) return error;
  if (error instanceof Error) {
    const code = typedCode(error);
    return new IiiError(code ?? fallback, error.message, { cause: error });
  }
  return new IiiError(fallback, String(error), { cause: error });
}

export function isIiiError(error: unknown, code?: ErrorCode | ForeignErrorCode): error is IiiError {
  return error instanceof IiiError && (code === undefined || error.code === code);
}

/** What the CLI prints for any error: a stable code, one line of message, and the exit status. */
export interface ErrorReport {
  code: string;
  message: string;
  exitCode: number;
}

/**
 * The code an error shows the user: an IiiError's own; a typed error of another package (`FilesystemError`,
 * `NetworkError`, `InitError`: an Error subclass with a string `code`) keeps its code, as does a Node system error
 * (`EACCES`, `ENOSPC`: the environment, not a bug), both exit 1; anything else is a bug: `Internal`, exit 70.
 */
export function describeError(error: unknown): ErrorReport {
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ").trim();
  if (error instanceof IiiError) return { code: error.code, message: oneLine(error.message), exitCode: error.exitCode };
  if (error instanceof Error) {
    const code = errnoCode(error);
    if (code && !code.startsWith("ERR_") && /^[A-Za-z][\w.:-]*$/.test(code) && (error.name !== "Error" || /^E[A-Z0-9]+$/.test(code))) {
      return { code, message: oneLine(error.message), exitCode: 1 };
    }
    return { code: "Internal", message: oneLine(`internal error: ${error.message}`), exitCode: ERROR_CODES.Internal };
  }
  return { code: "Internal", message: oneLine(`internal error: ${String(error)}`), exitCode: ERROR_CODES.Internal };
}

/** The errno-style code of a Node system error, if it has one. */
export function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : undefined;
}
