import { createRequire } from "node:module";
import type * as KoffiNs from "koffi";

const require = createRequire(import.meta.url);
let koffi: typeof KoffiNs | undefined;

/**
 * koffi's native module, loaded directly: the package's index.js first evaluates its bundled installer tools
 * (https, zlib, crypto), ~45 ms of CPU in a FUSE server starting beside the supervisor on 2 cores; what it adds
 * to the native module is only deprecated aliases. Built here for linux-x64-glibc; another layout or a version
 * mismatch takes the package's own entry.
 */
export function loadKoffi(): typeof KoffiNs {
  if (!koffi) {
    let native: (typeof KoffiNs & { version?: string }) | undefined;
    try {
      if (process.platform === "linux" && process.arch === "x64") {
        native = require("koffi/build/koffi/linux_x64/koffi.node") as typeof KoffiNs & { version?: string };
        if (native.version !== (require("koffi/package.json") as { version: string }).version) native = undefined;
      }
    } catch {
      native = undefined;
    }
    koffi = native ?? (require("koffi") as typeof KoffiNs);
  }
  return koffi;
}
