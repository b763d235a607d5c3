// Pseudo-terminals for tty execs. Node's spawn cannot make a pts the
// controlling terminal, so the child is init itself re-executed in a helper
// mode: it is already a session leader (spawn's `detached` calls setsid), takes
// the pts on fd 0 as its controlling terminal (TIOCSCTTY) and execvpe()s the
// real command, which thereby inherits pid, session and terminal.

import { openSync, closeSync } from "node:fs";
import { ReadStream } from "node:tty";
import { O_NOCTTY, O_RDWR, O_CLOEXEC, TIOCSCTTY, TIOCSWINSZ, isSea, libc, type Libc } from "./native.js";

export const PTY_HELPER_MODE = "__iii_pty_exec";

export interface Pty {
  masterFd: number;
  slaveFd: number;
  /** Read+write stream over the master. */
  master: ReadStream;
  resize(rows: number, cols: number): void;
  closeSlave(): void;
  readonly slaveOpen: boolean;
}

export function setWinsize(l: Libc, fd: number, rows: number, cols: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(Math.max(1, Math.min(rows, 0xffff)), 0);
  ws.writeUInt16LE(Math.max(1, Math.min(cols, 0xffff)), 2);
  l.ioctlBuf(fd, TIOCSWINSZ, ws);
}

export function openPty(rows: number, cols: number): Pty {
  const l = libc();
  const masterFd = l.posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  l.grantpt(masterFd);
  l.unlockpt(masterFd);
  const slavePath = l.ptsname(masterFd);
  setWinsize(l, masterFd, rows, cols);
  const slaveFd = openSync(slavePath, O_RDWR | O_NOCTTY);
  const master = new ReadStream(masterFd);
  let slaveOpen = true;
  return {
    masterFd,
    slaveFd,
    master,
    resize: (r, c) => setWinsize(l, masterFd, r, c),
    closeSlave: () => {
      if (slaveOpen) closeSync(slaveFd);
      slaveOpen = false;
    },
    get slaveOpen() {
      return slaveOpen;
    },
  };
}

/** argv prefix that re-executes this init in helper mode. */
export function helperCommand(): { file: string; args: string[] } {
  if (isSea()) return { file: process.execPath, args: [PTY_HELPER_MODE] };
  return { file: process.execPath, args: [process.argv[1]!, PTY_HELPER_MODE] };
}

export function encodeHelperSpec(argv: string[], env: Record<string, string>): string {
  return Buffer.from(JSON.stringify({ argv, env }), "utf8").toString("base64");
}

/** Helper mode body: never returns on success. */
export function runPtyHelper(specB64: string): never {
  const spec = JSON.parse(Buffer.from(specB64, "base64").toString("utf8")) as {
    argv: string[];
    env: Record<string, string>;
  };
  const l = libc();
  try {
    l.ioctlInt(0, TIOCSCTTY, 0);
  } catch (err) {
    process.stderr.write(`iii-init: pty: ${(err as Error).message}\n`);
    process.exit(126);
  }
  // execvpe searches the caller's PATH: make it the command's.
  process.env.PATH = spec.env.PATH ?? process.env.PATH;
  l.prepareStdioForExec();
  try {
    l.execvpe(spec.argv[0]!, spec.argv, Object.entries(spec.env).map(([k, v]) => `${k}=${v}`));
  } catch (err) {
    process.stderr.write(`iii-init: exec ${spec.argv[0]}: ${(err as Error).message}\n`);
    process.exit((err as { errnoName?: string }).errnoName === "ENOENT" ? 127 : 126);
  }
  process.exit(126);
}
