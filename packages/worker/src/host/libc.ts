import { createRequire } from "node:module";

// koffi (a native addon, then libc) loads on the first call, not with this module: most CLI commands never call
// into libc, and loading koffi costs the CLI ~100 ms of start-up through its package entry (~20 ms directly).
const requireCjs = createRequire(import.meta.url);

type Koffi = Pick<typeof import("koffi"), "load" | "errno">;
type Library = ReturnType<Koffi["load"]>;

let koffiModule: Koffi | undefined;
let library: Library | undefined;
const functions = new Map<string, unknown>();

/**
 * koffi's native module, loaded directly: koffi's index.js first evaluates its bundled installer tools, which
 * pull in https, zlib and crypto (measured: ~20 ms for the native module vs ~100 ms through index.js, on the
 * supervisor's boot path). The package is built for linux-x64-glibc only (package.json `os`/`cpu`/`libc`); any
 * other layout or a version mismatch falls back to the package's own entry.
 */
export function loadKoffi(): Koffi {
  if (!koffiModule) {
    let native: (Koffi & { version?: string }) | undefined;
    try {
      if (process.platform === "linux" && process.arch === "x64") {
        native = requireCjs("koffi/build/koffi/linux_x64/koffi.node") as Koffi & { version?: string };
        if (native.version !== (requireCjs("koffi/package.json") as { version: string }).version) native = undefined;
      }
    } catch {
      native = undefined;
    }
    koffiModule = native ?? (requireCjs("koffi") as Koffi);
  }
  return koffiModule;
}

/**
 * One libc function, bound from the process's one libc.so.6 handle (loaded, with koffi, on the first call of
 * any function). `signature` is koffi's C prototype, e.g. `"int flock(int fd, int operation)"`; the same
 * signature gives the same bound function, so modules that need the same call share it.
 */
export function libcFunction<F extends (...args: never[]) => unknown>(signature: string): F {
  let fn = functions.get(signature);
  if (!fn) {
    library ??= loadKoffi().load("libc.so.6");
    fn = library.func(signature);
    functions.set(signature, fn);
  }
  return fn as F;
}

/** The errno the last libc call made through koffi on this thread left behind. */
export function libcErrno(): number {
  return loadKoffi().errno();
}
