// Types of the QuickJS engine modules the static init imports (the subset used).
declare module "std" {
  export function loadFile(path: string): string | null;
  export function getenviron(): Record<string, string>;
  export function exit(code: number): never;
  export function open(path: string, mode: string): StdFile | null;
  export function strerror(errno: number): string;
  export const out: StdFile;
  export const err: StdFile;
  export interface StdFile {
    puts(s: string): void;
    write(buf: ArrayBuffer, pos: number, len: number): number;
    flush(): void;
    close(): number;
  }
}

declare module "os" {
  export function open(path: string, flags: number, mode?: number): number;
  export function close(fd: number): number;
  export function dup(fd: number): number;
  export function read(fd: number, buf: ArrayBuffer, pos: number, len: number): number;
  export function write(fd: number, buf: ArrayBuffer, pos: number, len: number): number;
  export function setReadHandler(fd: number, fn: (() => void) | null): void;
  export function setWriteHandler(fd: number, fn: (() => void) | null): void;
  export function signal(sig: number, fn: (() => void) | null | undefined): void;
  export function setTimeout(fn: () => void, ms: number): unknown;
  export function clearTimeout(handle: unknown): void;
  export function now(): number;
  export function sleep(ms: number): void;
  export function mkdir(path: string, mode?: number): number;
  export function rename(from: string, to: string): number;
  export function remove(path: string): number;
  export function symlink(target: string, linkpath: string): number;
  export function readdir(path: string): [string[], number];
  export function stat(path: string): [{ dev: number; ino: number; mode: number; uid: number; gid: number; size: number }, number];
  export function lstat(path: string): [{ dev: number; ino: number; mode: number; size: number; uid: number; nlink: number }, number];
  export function getpid(): number;
  export function waitpid(pid: number, options: number): [number, number];
  export function kill(pid: number, sig: number): number;
  export const WNOHANG: number;
  export const S_IFMT: number;
  export const S_IFDIR: number;
  export const S_IFREG: number;
  export const O_RDONLY: number;
  export const O_WRONLY: number;
  export const O_RDWR: number;
  export const O_CREAT: number;
  export const O_TRUNC: number;
  export const O_APPEND: number;
}

declare module "iii:sys" {
  /** Every function returns a result ≥ 0 (or an array) or -errno. */
  export function mount(source: string, target: string, fstype: string, flags: number, data: string | null): number;
  export function umount2(target: string, flags: number): number;
  /**
   * Roots the kernel threads (which start usermode helpers such as /sbin/bridge-stp) in an empty read-only file
   * system mounted nowhere; PID 1 keeps its root and working directory. Only meaningful as the VM's PID 1.
   */
  export function rootKernelThreads(): number;
  export function reboot(cmd: number): number;
  export function sync(): number;
  export function sethostname(name: string): number;
  export function setrlimit(resource: number, soft: number, hard: number): number;
  export function getrlimit(resource: number): [number, number] | number;
  export function prctl(option: number, arg: number): number;
  export function chown(path: string, uid: number, gid: number): number;
  export function getppid(): number;
  export function connectUnix(path: string): number;
  export function open(path: string, flags: number, mode?: number): number;
  export function pipe(): [number, number] | number;
  export function setNonBlock(fd: number, on: number): number;
  export function openpty(rows: number, cols: number): [number, number] | number;
  export function setWinsize(fd: number, rows: number, cols: number): number;
  export function socket(domain: number, type: number, protocol: number): number;
  /** ioctl with a pointer to the whole ArrayBuffer (in/out). */
  export function ioctlBuf(fd: number, request: number, buf: ArrayBuffer): number;
  export function errnoName(errno: number): string;
  export function strerror(errno: number): string;
  export interface SpawnOptions {
    cwd?: string;
    uid?: number;
    gid?: number;
    groups?: number[];
    setsid?: boolean;
    ctty?: boolean;
    stdin?: number;
    stdout?: number;
    stderr?: number;
    /** cgroup.procs files the child joins (writes "0" to) before exec: init itself never enters the leaf. */
    cgroupProcs?: string[];
    /** Written to the child's /proc/self/oom_score_adj before it drops privileges (best effort). */
    oomScoreAdj?: number;
    /**
     * After joining its cgroup: its own mount namespace with /sys, the cgroup tree and /proc/sys read-only, clone3
     * and request_key refused, and every capability outside `capabilities` out of its bounding set, so it cannot
     * lift its own limits (iii_sys.c, spawn_child).
     */
    confine?: boolean;
    /** With confine (required then): the capabilities kept, bit n = capability n. */
    capabilities?: number;
  }
  /** pid, or [-errno, stage] when the child failed before exec, or -errno when fork failed. */
  export function spawn(argv: string[], env: string[], options: SpawnOptions): number | [number, number];
}
