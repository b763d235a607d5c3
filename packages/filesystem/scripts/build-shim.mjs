// Compiles dist/libiii-setattr-shim.so when a C compiler is present (see
// src/native/setattr-shim.c). Without one the package still works; only the
// child-process server then keeps libfuse 2.9's dropped mtime-only updates.
import { execFileSync } from "node:child_process";
import fs from "node:fs";

const out = new URL("../dist/libiii-setattr-shim.so", import.meta.url).pathname;
const src = new URL("../src/native/setattr-shim.c", import.meta.url).pathname;
fs.mkdirSync(new URL("../dist/", import.meta.url), { recursive: true });
for (const cc of [process.env.CC, "cc", "gcc", "clang"].filter(Boolean)) {
  try {
    execFileSync(cc, ["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", out, src, "-ldl", "-lpthread"], { stdio: "inherit" });
    console.log(`built ${out}`);
    process.exit(0);
  } catch {
    // try the next compiler
  }
}
console.warn("@iii/filesystem: no C compiler found; mtime-only updates stay dropped (see README)");
