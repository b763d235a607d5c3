// Property test: random operation sequences give the same results (values and
// errno) and the same final tree on a mount as on a plain directory, for the
// passthrough and for a layered view (plain side: a copy of the lower).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, shOk, snapshot, tempDir } from "./helpers.js";

const EXEC = fileURLToPath(new URL("./fuzz-exec.py", import.meta.url));
const SEEDS = (process.env.III_FUZZ_SEEDS ?? "1,2,3").split(",").map(Number);
const OPS_PER_SEED = Number(process.env.III_FUZZ_OPS ?? 300);

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Op = (string | number)[];

export function generateOps(seed: number, count: number, opts: { hardLinks: boolean }): Op[] {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const dirs = ["", "", "d1/", "d1/d2/", "d3/", "lnk/"] as const;
  const names = ["a", "b", "c", "d1", "d2", "d3", "lnk"] as const;
  const p = () => `${pick(dirs)}${pick(names)}`.replace(/^$/, "a");
  const text = () => "x".repeat(Math.floor(rnd() * 5)) + String(Math.floor(rnd() * 1000));
  const ops: Op[] = [];
  for (let i = 0; i < count; i++) {
    const r = rnd();
    const kinds = [
      "create", "create", "append", "overwrite", "pwrite", "read", "read", "truncate", "mkdir", "mkdir", "rmdir",
      "unlink", "rename", "rename", "symlink", "link", "chmod", "chown", "stat", "lstat", "listdir", "readlink",
      "setxattr", "getxattr", "listxattr", "removexattr", "utime", "mkfifo",
    ] as const;
    const k = pick(opts.hardLinks ? kinds : kinds.filter((x) => x !== "link"));
    switch (k) {
      case "create":
      case "append":
      case "overwrite":
        ops.push([k, p(), text()]);
        break;
      case "pwrite":
        ops.push([k, p(), text(), Math.floor(r * 20)]);
        break;
      case "truncate":
        ops.push([k, p(), Math.floor(r * 12)]);
        break;
      case "mkdir":
        ops.push([k, p(), pick([0o755, 0o700, 0o1777])]);
        break;
      case "rename":
      case "link":
        ops.push([k, p(), p()]);
        break;
      case "symlink":
        // Absolute targets must not lead anywhere real on the host: the client follows them.
        ops.push([k, pick(["a", "../a", "d1", "/proc/iii-fuzz-absent", "d1/d2", "."]), p()]);
        break;
      case "chmod":
        ops.push([k, p(), pick([0o644, 0o600, 0o755, 0o4755, 0o000])]);
        break;
      case "chown":
        ops.push([k, p(), pick([0, 1, 1000]), pick([0, 2, 1000])]);
        break;
      case "setxattr":
        ops.push([k, p(), pick(["user.a", "user.b"]), text()]);
        break;
      case "getxattr":
      case "removexattr":
        ops.push([k, p(), pick(["user.a", "user.b"])]);
        break;
      case "utime":
        ops.push([k, p(), 1_000_000_000 + Math.floor(r * 1e6), 1_100_000_000 + Math.floor(r * 1e6)]);
        break;
      case "listdir":
        ops.push([k, pick(dirs).replace(/\/$/, "") || "."]);
        break;
      default:
        ops.push([k, p()]);
    }
  }
  return ops;
}

const LOWER_SEED = String.raw`
mkdir -p d1/d2 d3
echo lower-a > a
echo lower-b > d1/b
echo lower-c > d1/d2/c
ln -s d1 lnk
setfattr -n user.a -v lower d1/b
touch -d '2001-01-01' a d1/b
`;

describe.skipIf(!fuse.ok)("fuzz: random operation sequences, mount vs plain directory", () => {
  let base: string;
  const handles: MountHandle[] = [];

  beforeAll(() => {
    base = tempDir("fuzz");
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  // "strict": attribute cache off, every operation including hard links must match.
  // "default": the default caches; hard links are left out because libfuse 2 gives
  // each name its own kernel inode, whose cached attributes may lag (documented).
  const configs = [
    { label: "strict cache", cache: { attrTimeoutSec: 0 }, hardLinks: true },
    { label: "default cache", cache: undefined, hardLinks: false },
  ] as const;
  for (const mode of ["passthrough", "layered"] as const) {
    for (const config of configs) {
      for (const seed of SEEDS) {
        it(`${mode}, ${config.label}, seed ${seed}: same results and same final tree`, async () => {
          const dir = path.join(base, `${mode}-${config.label.split(" ")[0]}-${seed}`);
          const plain = path.join(dir, "plain");
          const mnt = path.join(dir, "mnt");
          const backing = path.join(dir, "backing");
          const upper = path.join(dir, "upper");
          for (const d of [plain, mnt, backing, upper]) fs.mkdirSync(d, { recursive: true });
          // Work one level down: relative symlinks like "../a" then stay inside each tree.
          await shOk(`mkdir w && cd w && ${LOWER_SEED}`, backing);
          await shOk(`mkdir w && cd w && ${LOWER_SEED}`, plain);
          const cache = process.env.III_FUZZ_CACHE ? (JSON.parse(process.env.III_FUZZ_CACHE) as object) : config.cache;
          const h = await mountPassthrough(
            mode === "layered" ? { layers: { lower: backing, upper }, mountpoint: mnt, cache } : { root: backing, mountpoint: mnt, cache },
          );
          handles.push(h);
          const opsFile = path.join(dir, "ops.json");
          const ops = generateOps(seed, OPS_PER_SEED, { hardLinks: config.hardLinks });
          fs.writeFileSync(opsFile, JSON.stringify(ops));
          const onPlain = JSON.parse(await shOk(`python3 "${EXEC}" w "${opsFile}"`, plain)) as unknown[];
          const onMount = JSON.parse(await shOk(`python3 "${EXEC}" w "${opsFile}"`, mnt)) as unknown[];
          for (let i = 0; i < ops.length; i++) {
            expect(onMount[i], `op #${i} ${JSON.stringify(ops[i])}`).toEqual(onPlain[i]);
          }
          // The sequence did real work: a mix of successes and failures.
          const oks = onPlain.filter((r) => (r as string[])[0] === "ok").length;
          expect(oks).toBeGreaterThan(ops.length / 8);
          expect(oks).toBeLessThan(ops.length);
          expect(await snapshot(mnt)).toEqual(await snapshot(plain));
          await h.unmount();
        });
      }
    }
  }
});
