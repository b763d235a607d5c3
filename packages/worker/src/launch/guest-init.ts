import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { GUEST_PATHS } from "@iii/init";
import { IiiError } from "../errors.js";

export interface GuestInitFiles {
  /** Host path of the init executable, served as `/init.krun`. */
  init: string;
  /** Virtual path (`/.iii/...`) → host file, for the runtime init needs (loader, libc, koffi). */
  runtime: Record<string, string>;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(path));
    else if (entry.isFile() || (entry.isSymbolicLink() && statSync(path).isFile())) out.push(path);
  }
  return out;
}

/**
 * Finds the guest init built by @iii/init: the static `dist/init-static` (one statically linked ELF, nothing
 * injected beside it) when it was built, else the Node single executable `dist/init.krun` with its
 * `dist/iii-runtime/` under `/.iii/`; or the files named by `III_INIT_PATH` (the executable) and
 * `III_INIT_RUNTIME` (its runtime directory).
 */
export function findGuestInit(env: NodeJS.ProcessEnv = process.env): GuestInitFiles {
  let init = env.III_INIT_PATH;
  let runtimeDir = env.III_INIT_RUNTIME;
  if (!init) {
    try {
      const require = createRequire(import.meta.url);
      const pkgDir = dirname(require.resolve("@iii/init/package.json"));
      const staticInit = join(pkgDir, "dist", "init-static");
      if (existsSync(staticInit)) return { init: staticInit, runtime: {} };
      init = join(pkgDir, "dist", "init.krun");
      runtimeDir ??= join(pkgDir, "dist", "iii-runtime");
    } catch {
      throw new IiiError("VmBootFailed", "the guest init (@iii/init) is not installed; set III_INIT_PATH");
    }
  }
  if (!existsSync(init)) {
    throw new IiiError("VmBootFailed", `guest init ${init} is missing: run "pnpm --filter @iii/init build:sea" (or set III_INIT_PATH)`);
  }
  const runtime: Record<string, string> = {};
  if (runtimeDir && existsSync(runtimeDir)) {
    for (const file of listFiles(runtimeDir)) runtime[`${GUEST_PATHS.runtimeDir}/${relative(runtimeDir, file)}`] = file;
  }
  return { init, runtime };
}
