// Builds the guest init as a Node single executable application:
//   dist/init.krun      node + the bundled init (ELF interpreter /.iii/ld-linux-x86-64.so.2, DT_RPATH /.iii)
//   dist/iii-runtime/   what it needs at run time, injected at /.iii/ in the guest:
//                       the dynamic loader, libc, libm, libdl, libpthread, libstdc++, libgcc_s, koffi.node
// Needs: the official Node build running this script (Node 24), postject (devDependency), Debian patchelf.
// Usage: node scripts/build-sea.mjs   (pnpm --filter @iii/init build:sea)

import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "tsup";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(pkgDir, "dist");
const work = join(dist, "sea");
const runtime = join(dist, "iii-runtime");
const binary = join(dist, "init.krun");
const GUEST_RUNTIME_DIR = "/.iii";
const SENTINEL_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8", ...opts });
}

const t0 = performance.now();
rmSync(work, { recursive: true, force: true });
rmSync(runtime, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
mkdirSync(runtime, { recursive: true });

// 1. One CommonJS file (SEA mains are CommonJS). koffi stays out: in the
//    executable its native module is process.dlopen()ed from /.iii/.
await build({
  entry: { init: join(pkgDir, "src/cli.ts") },
  outDir: work,
  format: ["cjs"],
  platform: "node",
  target: "node24",
  bundle: true,
  noExternal: [/.*/],
  external: ["koffi"],
  splitting: false,
  sourcemap: false,
  clean: false,
  dts: false,
  silent: true,
  tsconfig: join(pkgDir, "tsconfig.json"),
});
const main = join(work, "init.cjs");

// 2. The SEA blob (with V8 code cache: it shortens startup).
const blob = join(work, "sea-prep.blob");
writeFileSync(
  join(work, "sea-config.json"),
  JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, useSnapshot: false }),
);
run(process.execPath, ["--experimental-sea-config", join(work, "sea-config.json")]);

// 3. The runtime: exactly the libraries node and koffi.node resolve to on this build host.
const nodeBinary = realpathSync(process.execPath);
const koffiNode = join(dirname(createRequire(join(pkgDir, "package.json")).resolve("koffi")), "build/koffi/linux_x64/koffi.node");
function deps(file) {
  const out = run("ldd", [file]);
  const libs = new Map();
  for (const line of out.split("\n")) {
    const m = line.match(/^\s*(\S+)\s+=>\s+(\S+)\s+\(/) ?? line.match(/^\s*(\/\S+)\s+\(/);
    if (!m) continue;
    const path = m[2] ?? m[1];
    const name = m[2] ? m[1] : path.split("/").pop();
    libs.set(name, path);
  }
  return libs;
}
const libs = new Map([...deps(nodeBinary), ...deps(koffiNode)]);
let interpreter = null;
for (const [name, path] of libs) {
  copyFileSync(realpathSync(path), join(runtime, name));
  chmodSync(join(runtime, name), 0o755);
  if (name.startsWith("ld-linux")) interpreter = name;
}
if (!interpreter) throw new Error("no dynamic loader among node's dependencies");
copyFileSync(koffiNode, join(runtime, "koffi.node"));

// 4. The executable: strip, inject the blob, then set loader and search path.
copyFileSync(nodeBinary, binary);
chmodSync(binary, 0o755);
// Symbols and debug info are read through the rootfs view on the guest's boot path: drop them
// (before patchelf: strip does not like patchelf's relocated sections).
try {
  run("strip", ["--strip-unneeded", binary]);
} catch (err) {
  console.warn(`strip failed, keeping symbols: ${err.message}`);
}
run(process.execPath, [
  createRequire(join(pkgDir, "package.json")).resolve("postject/dist/cli.js"),
  binary,
  "NODE_SEA_BLOB",
  blob,
  "--sentinel-fuse",
  SENTINEL_FUSE,
]);
// patchelf last: postject (LIEF) rewrites .dynstr and would garble an RPATH added before it.
// DT_RPATH (not RUNPATH) so it also covers libstdc++'s and koffi.node's own dependencies.
run("patchelf", ["--set-interpreter", `${GUEST_RUNTIME_DIR}/${interpreter}`, "--force-rpath", "--set-rpath", GUEST_RUNTIME_DIR, binary]);

const size = statSync(binary).size;
const runtimeBytes = [...libs.keys(), "koffi.node"].reduce((n, f) => n + statSync(join(runtime, f)).size, 0);
console.log(
  `dist/init.krun ${(size / 1e6).toFixed(1)} MB; dist/iii-runtime ${(runtimeBytes / 1e6).toFixed(1)} MB: ` +
    `${[...libs.keys(), "koffi.node"].join(" ")} (built in ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
);
