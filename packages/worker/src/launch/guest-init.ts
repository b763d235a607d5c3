import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { IiiError } from "../errors.js";

export interface GuestInitFiles {
  /** Host path of the init executable, served as `/init.krun`: one static ELF, nothing injected beside it. */
  init: string;
}

/** What @iii/init promises for its guest init (its build fails past it); doctor warns beyond. */
export const GUEST_INIT_BUDGET_BYTES = 5 * 1024 * 1024;

const BUILD_HINT = 'run "pnpm --filter @iii/init build:static" (or set III_INIT_PATH)';

/**
 * Finds the guest init: `III_INIT_PATH`, else @iii/init's `dist/init.krun`. It must be a statically linked
 * x86-64 ELF: the guest's root is the image's, which may hold no libc at all (distroless, busybox, musl).
 */
export function findGuestInit(env: NodeJS.ProcessEnv = process.env): GuestInitFiles {
  let init = env.III_INIT_PATH;
  if (!init) {
    try {
      const require = createRequire(import.meta.url);
      init = join(dirname(require.resolve("@iii/init/package.json")), "dist", "init.krun");
    } catch {
      throw new IiiError("VmBootFailed", "the guest init (@iii/init) is not installed; set III_INIT_PATH");
    }
  }
  if (!existsSync(init)) throw new IiiError("VmBootFailed", `guest init ${init} is missing: ${BUILD_HINT}`);
  const problem = staticElfProblem(init);
  if (problem) throw new IiiError("VmBootFailed", `guest init ${init} ${problem}: ${BUILD_HINT}`);
  return { init };
}

/** Why `path` cannot be the guest's PID 1 (not an x86-64 ELF executable, or dynamically linked), or null. */
export function staticElfProblem(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    return `cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
  try {
    if (!statSync(path).isFile()) return "is not a regular file";
    const head = Buffer.alloc(64);
    // ELF64, little-endian, ET_EXEC or ET_DYN (static-pie), EM_X86_64.
    if (readSync(fd, head, 0, 64, 0) < 64 || head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head[5] !== 1) {
      return "is not an x86-64 ELF executable";
    }
    if (![2, 3].includes(head.readUInt16LE(16)) || head.readUInt16LE(18) !== 62) return "is not an x86-64 ELF executable";
    const phoff = Number(head.readBigUInt64LE(32));
    const phentsize = head.readUInt16LE(54);
    const phnum = head.readUInt16LE(56);
    const table = Buffer.alloc(phentsize * phnum);
    if (phentsize < 4 || readSync(fd, table, 0, table.length, phoff) < table.length) return "is not an x86-64 ELF executable (truncated program headers)";
    for (let i = 0; i < phnum; i++) {
      // PT_INTERP: it needs a loader and a libc the guest does not have.
      if (table.readUInt32LE(i * phentsize) === 3) return "is dynamically linked (the guest has no libc for it)";
    }
    return null;
  } finally {
    closeSync(fd);
  }
}
