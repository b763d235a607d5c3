/** Stable failure codes of @iii/filesystem. The CLI maps them to exit statuses. */
export type FilesystemErrorCode =
  | "InvalidOptions"
  | "RootNotFound"
  | "MountpointInvalid"
  | "MountpointBusy"
  | "FuseUnavailable"
  | "MountFailed"
  | "UnmountFailed"
  | "UnmountTimeout"
  | "ExternalUnmount"
  | "ServerExited"
  | "VirtualFileInvalid"
  | "StaleMountCleanupFailed"
  | "DiskLimitUnsupported";

export class FilesystemError extends Error {
  readonly code: FilesystemErrorCode;
  constructor(code: FilesystemErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FilesystemError";
    this.code = code;
  }
}
