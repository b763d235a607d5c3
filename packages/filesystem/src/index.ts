export { mountPassthrough, cleanupStaleMount, unmountPath, fuseAvailable, setattrShimPath } from "./mount/mount.js";
export type { MountOptions, MountHandle, CacheOptions, UnmountReason, ServerMemory } from "./mount/mount.js";
export type { MountStats } from "./mount/fuse-shell.js";
export type { VirtualFileSource } from "./fs/virtual-files.js";
export { FilesystemError, type FilesystemErrorCode } from "./errors.js";
export { WHITEOUT_PREFIX, OPAQUE_MARKER } from "./fs/layered-tree.js";
export type { HostOwner, GuestOverride } from "./fs/host-meta.js";
export { OVERRIDE_XATTR, SYMLINK_OVERRIDE_XATTR, MAPPED_XATTR_PREFIX, RESERVED_XATTR_PREFIX, encodeOverride, decodeOverride } from "./fs/host-meta.js";
