// How a command that could not start ends, in a shell's terms (POSIX 2.8.2):
// 127 when it was not found, 126 when it was found but could not run. The
// exit stays code -1 (it never ran) with the shell's status beside it. Both
// inits (Node and QuickJS) report exec and workload failures through this, so
// the host sees the same status and the same line from either.

/** Where in starting a process the failure happened. */
export type SpawnStage = "fork" | "cgroup" | "setsid" | "stdio" | "tty" | "credentials" | "cwd" | "exec" | "confine";

export interface SpawnFailure {
  /** -1: it never ran (ExitStatus). */
  code: -1;
  /** What a shell's $? would be: 127 not found, 126 found but not runnable (or an unusable working directory). */
  shellStatus: 126 | 127;
  /** One line naming what was wrong and the errno: `nope: command not found (ENOENT)`. */
  error: string;
}

const REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "not a directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOEXEC: "exec format error",
  ELOOP: "too many levels of symbolic links",
  ENAMETOOLONG: "file name too long",
  E2BIG: "argument list too long",
  ENOMEM: "out of memory",
  EAGAIN: "resource temporarily unavailable",
  ETXTBSY: "text file busy",
  EISDIR: "is a directory",
};

export function errnoReason(errnoName: string): string {
  return REASONS[errnoName] ?? errnoName;
}

export function spawnFailure(argv0: string, stage: SpawnStage, errnoName: string, cwd: string): SpawnFailure {
  const fail = (shellStatus: 126 | 127, what: string): SpawnFailure => ({ code: -1, shellStatus, error: `${what} (${errnoName})` });
  if (stage === "cwd") return fail(126, `cannot use working directory ${cwd}: ${errnoReason(errnoName)}`);
  if (stage === "exec") {
    // A bare name went through PATH; a path names one file (or a script whose interpreter is missing).
    if (errnoName === "ENOENT" || errnoName === "ENOTDIR") return fail(127, argv0.includes("/") ? `${argv0}: ${errnoReason(errnoName)}` : `${argv0}: command not found`);
    return fail(126, `${argv0}: cannot execute: ${errnoReason(errnoName)}`);
  }
  return fail(126, `${argv0}: cannot start (${stage}): ${errnoReason(errnoName)}`);
}
