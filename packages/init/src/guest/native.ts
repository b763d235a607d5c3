// Syscalls through koffi over the guest's libc. In the single executable the
// koffi native module is not inside the blob: it ships in /.iii/ beside the
// binary and is loaded with process.dlopen; in development koffi is required
// from node_modules as usual.

import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { constants as osConstants } from "node:os";
import type * as KoffiNs from "koffi";

type Koffi = typeof KoffiNs;

export class SysError extends Error {
  readonly errno: number;
  readonly errnoName: string;
  /** The errno name, like Node's ErrnoException.code (and the static init's SysError). */
  readonly code: string;
  constructor(call: string, errno: number) {
    const name = errnoName(errno);
    super(`${call} failed: ${name} (errno ${errno})`);
    this.name = "SysError";
    this.errno = errno;
    this.errnoName = name;
    this.code = name;
  }
}

const ERRNO_NAMES = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name]),
);

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

/** Directory of the runtime shipped beside the binary (/.iii when the binary is /init.krun). */
export function runtimeDir(): string {
  return join(dirname(process.execPath), ".iii");
}

export function isSea(): boolean {
  try {
    const sea = createRequire(process.execPath)("node:sea") as { isSea(): boolean };
    return sea.isSea();
  } catch {
    return false;
  }
}

function loadKoffi(): Koffi {
  if (isSea()) {
    const path = join(runtimeDir(), "koffi.node");
    if (!existsSync(path)) throw new Error(`koffi native module missing: ${path}`);
    const mod = { exports: {} as Koffi };
    process.dlopen(mod, path);
    return mod.exports;
  }
  // Resolve from the bundle's own location (dist/cli.js → ../node_modules/koffi).
  const from = process.argv[1] !== undefined && existsSync(process.argv[1]) ? process.argv[1] : process.cwd() + "/";
  return createRequire(from)("koffi") as Koffi;
}

// Linux x86_64/aarch64 constants.
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  REMOUNT: 32,
  BIND: 4096,
  REC: 16384,
  PRIVATE: 1 << 18,
  RELATIME: 1 << 21,
} as const;
export const MNT_DETACH = 2;
export const RB_AUTOBOOT = 0x01234567;
export const RB_POWER_OFF = 0x4321fedc;
export const RLIMIT_NOFILE = 7;
export const PR_SET_CHILD_SUBREAPER = 36;
export const PR_SET_NAME = 15;
export const TIOCSCTTY = 0x540e;
export const TIOCSWINSZ = 0x5414;
export const TIOCGWINSZ = 0x5413;
export const O_RDWR = 2;
export const O_NOCTTY = 0o400;
export const O_CLOEXEC = 0o2000000;
export const WNOHANG = 1;
export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SIOCGIFFLAGS = 0x8913;
export const SIOCSIFFLAGS = 0x8914;
export const SIOCSIFADDR = 0x8916;
export const SIOCSIFNETMASK = 0x891c;
export const SIOCSIFMTU = 0x8922;
export const SIOCADDRT = 0x890b;
export const IFF_UP = 0x1;
export const IFF_RUNNING = 0x40;
export const RTF_UP = 0x1;
export const RTF_GATEWAY = 0x2;

export interface Libc {
  koffi: Koffi;
  mount(source: string, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  reboot(cmd: number): void;
  sync(): void;
  sethostname(name: string): void;
  setrlimit(resource: number, soft: number, hard: number): void;
  getrlimit(resource: number): { soft: number; hard: number };
  prctl(option: number, arg: number): void;
  /** ioctl with an int argument. */
  ioctlInt(fd: number, request: number, arg: number): void;
  /** ioctl with a pointer to a buffer (in/out). */
  ioctlBuf(fd: number, request: number, buf: Buffer): void;
  socket(domain: number, type: number, protocol: number): number;
  close(fd: number): void;
  /** waitpid(pid, WNOHANG): [pid, raw status] or null when nothing was reaped. */
  waitpidNoHang(pid: number): [number, number] | null;
  posixOpenpt(flags: number): number;
  grantpt(fd: number): void;
  unlockpt(fd: number): void;
  ptsname(fd: number): string;
  /** Make fds 0-2 blocking and inherited across exec, close every other fd (best effort). */
  prepareStdioForExec(): void;
  /** execvpe(file, argv, envp); returns only on failure (throws). */
  execvpe(file: string, argv: string[], envp: string[]): never;
}

let cached: Libc | null = null;

export function libc(): Libc {
  if (cached) return cached;
  const koffi = loadKoffi();
  const lib = koffi.load("libc.so.6");
  const rlimit = koffi.struct("iii_rlimit", { rlim_cur: "uint64_t", rlim_max: "uint64_t" });
  const fns = {
    mount: lib.func("int mount(const char *, const char *, const char *, unsigned long, const char *)"),
    umount2: lib.func("int umount2(const char *, int)"),
    reboot: lib.func("int reboot(int)"),
    sync: lib.func("void sync(void)"),
    sethostname: lib.func("int sethostname(const char *, size_t)"),
    setrlimit: lib.func("setrlimit", "int", ["int", koffi.pointer(rlimit)]),
    getrlimit: lib.func("getrlimit", "int", ["int", koffi.out(koffi.pointer(rlimit))]),
    prctl: lib.func("prctl", "int", ["int", "unsigned long", "unsigned long", "unsigned long", "unsigned long"]),
    ioctl: lib.func("ioctl", "int", ["int", "unsigned long", "..."]),
    socket: lib.func("int socket(int, int, int)"),
    close: lib.func("int close(int)"),
    waitpid: lib.func("waitpid", "int", ["int", koffi.out(koffi.pointer("int")), "int"]),
    posix_openpt: lib.func("int posix_openpt(int)"),
    grantpt: lib.func("int grantpt(int)"),
    unlockpt: lib.func("int unlockpt(int)"),
    ptsname: lib.func("const char *ptsname(int)"),
    execvpe: lib.func("int execvpe(const char *, const char **, const char **)"),
    fcntl: lib.func("fcntl", "int", ["int", "int", "..."]),
    close_range: lib.func("int close_range(unsigned int, unsigned int, int)"),
  };
  const check = (call: string, rc: number): void => {
    if (rc < 0) throw new SysError(call, koffi.errno());
  };
  cached = {
    koffi,
    mount: (source, target, fstype, flags, data) =>
      check(`mount ${target}`, fns.mount(source, target, fstype, flags, data) as number),
    umount2: (target, flags) => check(`umount2 ${target}`, fns.umount2(target, flags) as number),
    reboot: (cmd) => check("reboot", fns.reboot(cmd) as number),
    sync: () => void fns.sync(),
    sethostname: (name) => check("sethostname", fns.sethostname(name, Buffer.byteLength(name)) as number),
    setrlimit: (resource, soft, hard) =>
      check("setrlimit", fns.setrlimit(resource, { rlim_cur: soft, rlim_max: hard }) as number),
    getrlimit: (resource) => {
      const out = { rlim_cur: 0, rlim_max: 0 };
      check("getrlimit", fns.getrlimit(resource, out) as number);
      return { soft: Number(out.rlim_cur), hard: Number(out.rlim_max) };
    },
    prctl: (option, arg) => check("prctl", fns.prctl(option, arg, 0, 0, 0) as number),
    ioctlInt: (fd, request, arg) => check(`ioctl 0x${request.toString(16)}`, fns.ioctl(fd, request, "int", arg) as number),
    ioctlBuf: (fd, request, buf) =>
      check(`ioctl 0x${request.toString(16)}`, fns.ioctl(fd, request, "void *", buf) as number),
    socket: (domain, type, protocol) => {
      const fd = fns.socket(domain, type, protocol) as number;
      check("socket", fd);
      return fd;
    },
    close: (fd) => check("close", fns.close(fd) as number),
    waitpidNoHang: (pid) => {
      const status = [0];
      const rc = fns.waitpid(pid, status, WNOHANG) as number;
      if (rc < 0) throw new SysError("waitpid", koffi.errno());
      return rc === 0 ? null : [rc, status[0]!];
    },
    posixOpenpt: (flags) => {
      const fd = fns.posix_openpt(flags) as number;
      check("posix_openpt", fd);
      return fd;
    },
    grantpt: (fd) => check("grantpt", fns.grantpt(fd) as number),
    unlockpt: (fd) => check("unlockpt", fns.unlockpt(fd) as number),
    ptsname: (fd) => {
      const name = fns.ptsname(fd) as string | null;
      if (name === null) throw new SysError("ptsname", koffi.errno());
      return name;
    },
    prepareStdioForExec: () => {
      // Node marks its stdio close-on-exec and may have made it non-blocking.
      const F_SETFD = 2;
      const F_GETFL = 3;
      const F_SETFL = 4;
      const O_NONBLOCK = 0o4000;
      for (const fd of [0, 1, 2]) {
        fns.fcntl(fd, F_SETFD, "int", 0);
        const flags = fns.fcntl(fd, F_GETFL, "int", 0) as number;
        if (flags >= 0) fns.fcntl(fd, F_SETFL, "int", flags & ~O_NONBLOCK);
      }
      try {
        fns.close_range(3, 0xffffffff, 0);
      } catch {}
    },
    execvpe: (file, argv, envp) => {
      fns.execvpe(file, [...argv, null], [...envp, null]);
      throw new SysError(`execvpe ${file}`, koffi.errno());
    },
  };
  return cached;
}
