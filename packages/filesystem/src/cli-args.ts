// Argument parsing and exit codes of the iii-fs CLI (pure; the CLI shell is cli.ts).
import { parseArgs } from "node:util";
import { FilesystemError, type FilesystemErrorCode } from "./errors.js";
import type { MountOptions } from "./mount/mount.js";
import type { VirtualFileSource } from "./fs/virtual-files.js";

export const USAGE = `usage:
  iii-fs mount <root> <mountpoint> [--ro] [--inject /init.krun=FILE]... [options]
  iii-fs mount --lower DIR --upper DIR <mountpoint> [--ro] [--inject PATH=FILE]... [options]
  iii-fs unmount <mountpoint>
  iii-fs --version
options:
  --entry-timeout SEC  --attr-timeout SEC  --no-kernel-cache  --no-auto-unmount
  --allow-other  (other users may use the mount; the kernel checks their permissions)
  --no-default-permissions  (with --allow-other: no kernel permission checks, as under virtiofsd)
  --use-ino  (host inode numbers; not under virtiofsd)
  --stable-inodes  (numbers derived from the host file, the same at every mount; safe under virtiofsd)
  --upper-limit BYTES  (with --upper: most bytes the writable layer may hold; beyond, ENOSPC)`;

export const EXIT: Record<FilesystemErrorCode, number> = {
  InvalidOptions: 2,
  RootNotFound: 2,
  MountpointInvalid: 2,
  VirtualFileInvalid: 2,
  ExternalUnmount: 3,
  ServerExited: 9,
  MountpointBusy: 4,
  FuseUnavailable: 5,
  MountFailed: 6,
  UnmountFailed: 7,
  UnmountTimeout: 7,
  StaleMountCleanupFailed: 8,
  DiskLimitUnsupported: 6,
};

export function usage(message: string): never {
  throw new FilesystemError("InvalidOptions", `${message}\n${USAGE}`);
}

export function parseMountArgs(args: string[]): MountOptions {
  const parse = () =>
    parseArgs({
      args,
      allowPositionals: true,
      options: {
        lower: { type: "string" },
        upper: { type: "string" },
        ro: { type: "boolean" },
        inject: { type: "string", multiple: true },
        "entry-timeout": { type: "string" },
        "attr-timeout": { type: "string" },
        "no-kernel-cache": { type: "boolean" },
        "no-auto-unmount": { type: "boolean" },
        "allow-other": { type: "boolean" },
        "no-default-permissions": { type: "boolean" },
        "use-ino": { type: "boolean" },
        "stable-inodes": { type: "boolean" },
        "upper-limit": { type: "string" },
      },
    });
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (err) {
    usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  const layered = values.lower !== undefined || values.upper !== undefined;
  if (layered && (values.lower === undefined || values.upper === undefined)) usage("--lower and --upper go together");
  if (positionals.length !== (layered ? 1 : 2)) usage(layered ? "expected <mountpoint>" : "expected <root> <mountpoint>");
  if (values["use-ino"] && values["stable-inodes"]) usage("--use-ino and --stable-inodes are exclusive");
  const virtualFiles: Record<string, VirtualFileSource> = {};
  for (const spec of values.inject ?? []) {
    const eq = spec.indexOf("=");
    if (eq <= 0) usage(`--inject wants GUEST_PATH=HOST_FILE, got ${spec}`);
    virtualFiles[spec.slice(0, eq)] = { hostPath: spec.slice(eq + 1) };
  }
  const seconds = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) usage(`--${name} wants seconds`);
    return n;
  };
  const opts: MountOptions = {
    mountpoint: positionals[layered ? 0 : 1] as string,
    readOnly: values.ro ?? false,
    virtualFiles,
    autoUnmount: !values["no-auto-unmount"],
    allowOther: values["allow-other"] ?? false,
    // Other users reach the mount directly: the kernel checks their permissions (default_permissions).
    defaultPermissions: (values["allow-other"] ?? false) && !values["no-default-permissions"],
    useIno: values["use-ino"] ?? false,
    stableInodes: values["stable-inodes"] ?? false,
    cache: {
      entryTimeoutSec: seconds(values["entry-timeout"], "entry-timeout"),
      attrTimeoutSec: seconds(values["attr-timeout"], "attr-timeout"),
      kernelCache: !values["no-kernel-cache"],
    },
  };
  if (values["upper-limit"] !== undefined) {
    if (!layered) usage("--upper-limit needs --lower and --upper");
    const n = Number(values["upper-limit"]);
    if (!/^\d+$/.test(values["upper-limit"]) || !Number.isSafeInteger(n) || n <= 0) usage(`--upper-limit wants a positive number of bytes, got ${values["upper-limit"]}`);
    opts.upperLimitBytes = n;
  }
  if (layered) opts.layers = { lower: values.lower as string, upper: values.upper as string };
  else opts.root = positionals[0] as string;
  return opts;
}

