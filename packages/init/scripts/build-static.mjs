#!/usr/bin/env node
// Builds dist/init.krun, the guest init: init's TypeScript (src/static/main.ts) bundled into
// one ES module, compiled to bytecode by QuickJS's qjsc, linked with libquickjs
// and our C module (static/iii_sys.c) by `gcc -static`. No runtime beside it.
//
// QuickJS comes from Debian trixie's source package, fetched with apt-get
// source through a private apt configuration (own sources list, state and
// cache dirs): the host's apt setup is untouched and no trixie binary is
// installed. The built engine is cached, keyed by the package version, under
// $III_QUICKJS_CACHE or node_modules/.cache/iii-quickjs/<version>/.
//
// Needs: apt-get + dpkg-source (Debian/Ubuntu), gcc, make, glibc's static libs
// (libc6-dev), network access to deb.debian.org on the first run.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, renameSync, chmodSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "tsup";

const PACKAGE = "quickjs";
const VERSION = process.env.III_QUICKJS_VERSION ?? "2025.04.26-1";
const SUITE = "trixie";
const MIRROR = process.env.III_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
const KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const cacheRoot = process.env.III_QUICKJS_CACHE ?? join(pkgDir, "node_modules", ".cache", "iii-quickjs");
const cache = join(cacheRoot, VERSION);
const srcDir = join(cache, "src");
const t0 = performance.now();
const log = (m) => console.log(`[build-static +${((performance.now() - t0) / 1000).toFixed(1)}s] ${m}`);
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: ["ignore", "inherit", "inherit"], ...opts });

function fetchSource() {
  const apt = join(cache, "apt");
  for (const d of ["etc/sources.list.d", "etc/preferences.d", "etc/apt.conf.d", "state/lists/partial", "cache/archives/partial"]) {
    mkdirSync(join(apt, d), { recursive: true });
  }
  writeFileSync(join(apt, "etc/sources.list"), `deb-src [signed-by=${KEYRING}] ${MIRROR} ${SUITE} main\n`);
  writeFileSync(join(apt, "state/status"), "");
  const opts = [
    `Dir::Etc::sourcelist=${apt}/etc/sources.list`,
    `Dir::Etc::sourceparts=${apt}/etc/sources.list.d`,
    `Dir::Etc::preferencesparts=${apt}/etc/preferences.d`,
    `Dir::Etc::parts=${apt}/etc/apt.conf.d`,
    `Dir::State=${apt}/state`,
    `Dir::State::status=${apt}/state/status`,
    `Dir::Cache=${apt}/cache`,
    "APT::Sandbox::User=root",
  ].flatMap((o) => ["-o", o]);
  log(`apt-get update (private: ${apt}, one deb-src line for ${SUITE})`);
  run("apt-get", [...opts, "-qq", "update"]);
  const dl = join(cache, "download");
  rmSync(dl, { recursive: true, force: true });
  mkdirSync(dl, { recursive: true });
  log(`apt-get source --download-only ${PACKAGE}=${VERSION}`);
  run("apt-get", [...opts, "-qq", "source", "--download-only", `${PACKAGE}=${VERSION}`], { cwd: dl });
  const tmp = `${srcDir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  run("dpkg-source", ["-x", `${PACKAGE}_${VERSION}.dsc`, tmp], { cwd: dl });
  renameSync(tmp, srcDir);
}

function buildEngine() {
  log(`make qjsc libquickjs.a (${srcDir})`);
  // LTO off: the archive is linked by a plain gcc -static below.
  run("make", [`-j${Math.max(1, (await_cpus()))}`, "CONFIG_LTO=", "qjsc", "libquickjs.a"], { cwd: srcDir, stdio: ["ignore", "ignore", "inherit"] });
  writeFileSync(join(cache, "built"), `${VERSION}\n`);
}

function await_cpus() {
  try {
    return Number(execFileSync("nproc", { encoding: "utf8" }).trim()) || 1;
  } catch {
    return 1;
  }
}

if (!existsSync(join(cache, "built"))) {
  if (!existsSync(join(srcDir, "quickjs.c"))) fetchSource();
  buildEngine();
} else log(`QuickJS ${VERSION}: cached in ${cache}`);

// 1. Bundle init's TypeScript for QuickJS: one ES module, engine modules external.
const out = join(pkgDir, "dist", "static");
mkdirSync(out, { recursive: true });
log("bundle src/static/main.ts (tsup/esbuild, platform neutral)");
await build({
  config: false,
  entry: { init: join(pkgDir, "src/static/main.ts") },
  outDir: out,
  format: ["esm"],
  platform: "neutral",
  target: "es2023",
  bundle: true,
  splitting: false,
  sourcemap: false,
  dts: false,
  clean: false,
  silent: true,
  external: ["std", "os", "iii:sys"],
  outExtension: () => ({ js: ".js" }),
});
const bundle = join(out, "init.js");
const bundleText = readFileSync(bundle, "utf8");
const stray = /^import .* from "(?!std"|os"|iii:sys")([^"]+)"/m.exec(bundleText);
if (stray) throw new Error(`bundle imports ${stray[1]}: the static init must not depend on Node modules`);

// 2. Bytecode + main() in C, with our module registered as "iii:sys".
log("qjsc -e -m -s (bytecode, debug info stripped)");
// Relative names: qjsc records the module's file name in the bytecode, and a host path has no place in the package.
run(join(srcDir, "qjsc"), ["-e", "-m", "-s", "-M", "iii:sys,iii_sys", "-N", "iii_init", "-o", "init.c", "init.js"], { cwd: out });

// 3. One static ELF.
const target = join(pkgDir, "dist", "init.krun");
log("gcc -static");
run("gcc", [
  "-static", "-O2", "-s",
  "-I", srcDir,
  "-o", `${target}.tmp`,
  join(out, "init.c"),
  join(pkgDir, "static", "iii_sys.c"),
  join(srcDir, "libquickjs.a"),
  "-lm", "-lpthread", "-latomic", "-ldl",
]);
renameSync(`${target}.tmp`, target);
// What the Node single-executable build (gone) left in a checkout: nothing may pick it up by mistake.
for (const stale of ["init-static", "iii-runtime", "sea"]) rmSync(join(pkgDir, "dist", stale), { recursive: true, force: true });
chmodSync(target, 0o755);
const file = execFileSync("file", ["-b", target], { encoding: "utf8" }).trim();
if (!/statically linked/.test(file)) throw new Error(`${target} is not static: ${file}`);
const size = statSync(target).size;
log(`${target}: ${(size / 1024 / 1024).toFixed(2)} MB (${size} bytes)\n  ${file}`);
if (size > 5 * 1024 * 1024) throw new Error(`static init is ${size} bytes, over the 5 MB budget`);
if (readFileSync(target).includes(pkgDir)) throw new Error(`${target} contains the build host's path ${pkgDir}`);
