import { openSync, closeSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { libcErrno, libcFunction } from "./libc.js";

const EBADF = 9;
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

describe("the shared libc handle", () => {
  it("binds a libc function that calls into this process's libc", () => {
    const getpid = libcFunction<() => number>("int getpid()");
    expect(getpid()).toBe(process.pid);
  });

  it("gives the same bound function for the same signature (file-lock and listen-socket share their bindings)", () => {
    const a = libcFunction<(fd: number, cmd: number, arg: number) => number>("int fcntl(int fd, int cmd, int arg)");
    const b = libcFunction<(fd: number, cmd: number, arg: number) => number>("int fcntl(int fd, int cmd, int arg)");
    expect(a).toBe(b);
    const fd = openSync("/dev/null", "r");
    try {
      expect(a(fd, F_SETFD, 0)).toBe(0);
      expect(b(fd, F_GETFD, 0) & FD_CLOEXEC).toBe(0);
      expect(a(fd, F_SETFD, FD_CLOEXEC)).toBe(0);
      expect(b(fd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    } finally {
      closeSync(fd);
    }
  });

  it("reports the errno of a failed call", () => {
    const flock = libcFunction<(fd: number, operation: number) => number>("int flock(int fd, int operation)");
    expect(flock(-1, 2)).toBe(-1);
    expect(libcErrno()).toBe(EBADF);
  });

  it("refuses a signature libc has no symbol for", () => {
    expect(() => libcFunction("int iii_no_such_libc_function(int x)")).toThrow();
  });
});
