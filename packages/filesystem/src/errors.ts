/** Stable failure codes of @iii/filesystem. The CLI maps them to exit statuses. */
export type FilesystemErrorCode =
  | "INVALID_OPTIONS"
  | "ROOT_NOT_FOUND"
  | "MOUNTPOINT_INVALID"
  | "MOUNTPOINT_BUSY"
  | "FUSE_UNAVAILABLE"
  | "MOUNT_FAILED"
  | "UNMOUNT_FAILED"
  | "EXTERNAL_UNMOUNT"
  | "SERVER_EXITED"
  | "VIRTUAL_FILE_INVALID"
  | "STALE_MOUNT_CLEANUP_FAILED";

export class FilesystemError extends Error {
  readonly code: FilesystemErrorCode;
  constructor(code: FilesystemErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FilesystemError";
    this.code = code;
  }
}
