/**
 * Every failure the worker surfaces to a user has a stable `code`. The CLI prints `message` as one line
 * (the stack only with --debug) and exits with `exitCode`.
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
  WorkloadStartFailed: 1,
  VmNotRunning: 1,
  ExecRejected: 1,
  PolicyDenied: 1,
  NotImplemented: 1,
  NotApplicable: 1,
  WasmInvalid: 1,
  WasiConfigInvalid: 1,
  WasmStartFailed: 1,
  Internal: 70,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class IiiError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "IiiError";
    this.code = code;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code];
  }
}

export function isIiiError(error: unknown, code?: ErrorCode): error is IiiError {
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
