// How an exec that cannot start ends, and how a terminal's end of input is typed: shared by both inits.
import { describe, expect, it } from "vitest";
import { spawnFailure } from "./spawn-failure.js";
import { TERMIOS_BYTES, ttyEofStart, ttyEofStep } from "./tty-eof.js";

describe("spawnFailure", () => {
  it("gives a shell's statuses: 127 not found, 126 not runnable or a bad working directory", () => {
    expect(spawnFailure("nope", "exec", "ENOENT", "/")).toEqual({ code: -1, shellStatus: 127, error: "nope: command not found (ENOENT)" });
    expect(spawnFailure("/bin/nope", "exec", "ENOENT", "/")).toEqual({ code: -1, shellStatus: 127, error: "/bin/nope: no such file or directory (ENOENT)" });
    expect(spawnFailure("/tmp/s", "exec", "EACCES", "/")).toMatchObject({ shellStatus: 126, error: "/tmp/s: cannot execute: permission denied (EACCES)" });
    expect(spawnFailure("ls", "cwd", "ENOENT", "/nonexist")).toMatchObject({ shellStatus: 126, error: "cannot use working directory /nonexist: no such file or directory (ENOENT)" });
    expect(spawnFailure("ls", "credentials", "EPERM", "/")).toMatchObject({ code: -1, shellStatus: 126 });
  });
});

function termios(canonical: boolean, veof = 4): Uint8Array {
  const t = new Uint8Array(TERMIOS_BYTES);
  new DataView(t.buffer).setUint32(12, canonical ? 0o2 | 0o10 : 0, true);
  t[17 + 4] = veof;
  return t;
}

describe("a terminal's end of input", () => {
  it("waits while input is queued, and for two empty looks in a row (writes reach the queue asynchronously)", () => {
    const s = ttyEofStart(0x0a);
    expect(ttyEofStep(s, termios(true), 3)).toBeNull();
    expect(ttyEofStep(s, termios(true), 0)).toBeNull();
    expect(ttyEofStep(s, termios(true), 2)).toBeNull();
    expect(ttyEofStep(s, termios(true), 0)).toBeNull();
    expect(ttyEofStep(s, termios(true), 0)).toBe(4);
    expect(s.left).toBe(0);
    expect(ttyEofStep(s, termios(true), 0)).toBeNull();
  });

  it("types VEOF twice after a partial line in canonical mode, once for a raw reader, and the terminal's own VEOF", () => {
    const partial = ttyEofStart(0x61);
    expect(partial.left).toBe(2);
    ttyEofStep(partial, termios(true, 26), 0);
    expect(ttyEofStep(partial, termios(true, 26), 0)).toBe(26);
    expect(partial.left).toBe(1);
    ttyEofStep(partial, termios(true, 26), 0);
    expect(ttyEofStep(partial, termios(true, 26), 0)).toBe(26);
    expect(partial.left).toBe(0);
    const raw = ttyEofStart(0x61);
    ttyEofStep(raw, termios(false), 0);
    expect(ttyEofStep(raw, termios(false), 0)).toBe(4);
    expect(raw.left).toBe(0);
    const disabled = ttyEofStart(undefined);
    ttyEofStep(disabled, termios(true, 0), 0);
    expect(ttyEofStep(disabled, termios(true, 0), 0)).toBe(4);
  });
});
