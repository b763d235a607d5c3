#!/usr/bin/env node
// prepack: refuses to pack @iii/init without what @iii/worker needs from it — the guest init dist/init.krun
// (a static x86-64 ELF of at most 5 MB; the worker boots it) and the library (dist/index.js, dist/index.d.ts)
// — or with a NOTICE that does not name the versions linked into it. One line, exit 1.
//
//   node scripts/check-pack.mjs [package-dir]
import { execFileSync } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const pkgDir = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), ".."));

function refuse(reason) {
  console.error(`@iii/init: refusing to pack: ${reason}`);
  process.exit(1);
}

for (const file of ["dist/index.js", "dist/index.d.ts"]) {
  if (!existsSync(join(pkgDir, file))) refuse(`${file} is missing (run "pnpm --filter @iii/init build")`);
}

const init = join(pkgDir, "dist", "init.krun");
const build = 'run "pnpm --filter @iii/init build:static"';
if (!existsSync(init)) refuse(`dist/init.krun, the guest init @iii/worker boots, is missing (${build})`);
try {
  accessSync(init, constants.X_OK);
} catch {
  refuse(`dist/init.krun is not executable (${build})`);
}
const elf = readFileSync(init);
if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf.readUInt16LE(18) !== 62) {
  refuse(`dist/init.krun is not an x86-64 ELF executable (${build})`);
}
const phoff = Number(elf.readBigUInt64LE(32));
const phentsize = elf.readUInt16LE(54);
for (let i = 0; i < elf.readUInt16LE(56); i++) {
  if (elf.readUInt32LE(phoff + i * phentsize) === 3) refuse(`dist/init.krun is dynamically linked; the guest has no libc for it (${build})`);
}
if (elf.length > 5 * 1024 * 1024) refuse(`dist/init.krun is ${elf.length} bytes, over the 5 MB budget (${build})`);
if (elf.includes(pkgDir)) refuse(`dist/init.krun contains the build host's path ${pkgDir} (${build})`);

// NOTICE lists what init.krun redistributes, with versions: they must be the ones this host links.
const notice = existsSync(join(pkgDir, "NOTICE")) ? readFileSync(join(pkgDir, "NOTICE"), "utf8") : refuse("NOTICE is missing");
const script = readFileSync(join(pkgDir, "scripts", "build-static.mjs"), "utf8");
const quickjs = (process.env.III_QUICKJS_VERSION ?? /const VERSION = process\.env\.III_QUICKJS_VERSION \?\? "([^"]+)"/.exec(script)?.[1] ?? "").replace(/-[^-]*$/, "");
const host = (cmd, args) => {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "";
  }
};
const versions = [
  ["QuickJS", quickjs, /QuickJS (\d+(?:\.\d+)+)/],
  ["glibc", host("getconf", ["GNU_LIBC_VERSION"]).replace(/^glibc /, ""), /GNU C Library \(glibc\) (\d+(?:\.\d+)+)/],
  ["GCC", host("gcc", ["-dumpfullversion"]), /GCC (\d+(?:\.\d+)+) runtime/],
];
for (const [what, linked, pattern] of versions) {
  const named = pattern.exec(notice)?.[1];
  if (!linked) refuse(`cannot tell which ${what} this host links (is it the build host?)`);
  if (named !== linked) refuse(`NOTICE names ${what} ${named ?? "(nothing)"} but dist/init.krun links ${what} ${linked}: update NOTICE`);
}
