// Time and peak RSS of pulling + unpacking a ~300 MB multi-layer image from a local docker-registry:
// ensureImage (ours) vs `skopeo copy` + `umoci unpack` (baseline), same image, same run, interleaved rounds
// (III_BENCH_ROUNDS, at least 3) reported as min / median / max with ratios.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { missingTools, skopeoPush, startRegistry, TOOLS } from "../../test/images/fixtures/registry.js";

const runner = process.argv[2]!;
const targetMb = Number(process.env.III_BENCH_IMAGE_MB ?? 300);
// The bundled script runs from a temp dir, so run.mjs passes the path of images/build.sh.
const buildScript = process.argv[3] ?? fileURLToPath(new URL("../../../../images/build.sh", import.meta.url));

/** Wall time and peak RSS (GNU time's maximum resident set size of the process, in KiB). */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): { seconds: number; peakKb: number } {
  const r = spawnSync("/usr/bin/time", ["-f", "BENCH %e %M", cmd, ...args], { encoding: "utf8", maxBuffer: 64 << 20, env });
  for (const line of r.stderr.split("\n")) if (line.startsWith("[images]")) console.log(`  ${line}`);
  const line = r.stderr.split("\n").find((l) => l.startsWith("BENCH "));
  if (r.status !== 0 || !line) throw new Error(`${cmd} ${args.join(" ")} failed:\n${r.stderr.slice(-2000)}`);
  const [, seconds, peak] = line.split(" ");
  return { seconds: Number(seconds), peakKb: Number(peak) };
}

/** Adds synthetic layers (many small text files, compressible and incompressible blobs) until ~targetMb. */
async function addLayers(layout: string, tag: string, work: string, mb: number): Promise<void> {
  const bundle = join(work, "bundle");
  execFileSync(TOOLS.umoci, ["unpack", "--image", `${layout}:${tag}`, bundle], { stdio: "ignore" });
  const root = join(bundle, "rootfs");
  const perLayer = Math.max(1, Math.floor(mb / 3));
  // layer A: a source tree: 8 KiB text files
  const files = Math.floor((perLayer * 1024) / 8);
  for (let i = 0; i < files; i++) {
    const dir = join(root, "app/src", `m${i % 200}`);
    if (i < 200) await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `f${i}.js`), `// module ${i}\n${"export const value = Math.random() * 42;\n".repeat(200)}`);
  }
  execFileSync(TOOLS.umoci, ["repack", "--refresh-bundle", "--image", `${layout}:${tag}`, bundle], { stdio: "ignore" });
  // layer B: half-compressible blobs; layer C: random blobs
  await mkdir(join(root, "app/assets"), { recursive: true });
  for (let i = 0; i < perLayer / 8; i++) await writeFile(join(root, "app/assets", `a${i}.bin`), Buffer.from(randomBytes(4 << 20).toString("hex")));
  execFileSync(TOOLS.umoci, ["repack", "--refresh-bundle", "--image", `${layout}:${tag}`, bundle], { stdio: "ignore" });
  await mkdir(join(root, "app/data"), { recursive: true });
  for (let i = 0; i < perLayer / 8; i++) await writeFile(join(root, "app/data", `d${i}.bin`), randomBytes(8 << 20));
  execFileSync(TOOLS.umoci, ["repack", "--refresh-bundle", "--image", `${layout}:${tag}`, bundle], { stdio: "ignore" });
  await rm(bundle, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const missing = missingTools();
  if (missing) {
    console.log(`skipped: ${missing}`);
    return;
  }
  const work = await mkdtemp(join(tmpdir(), "iii-bench-pull-"));
  const registry = await startRegistry();
  try {
    // Base: the node image from images/build.sh when it builds here (cached), else an empty image.
    const layout = join(work, "image");
    let baseMb = 0;
    try {
      const base = execFileSync("bash", [buildScript, "node"], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
      execFileSync("cp", ["-a", base, layout]);
      baseMb = Number(execFileSync("du", ["-sm", "--apparent-size", join(base, "blobs")], { encoding: "utf8" }).split("\t")[0]) * 2;
    } catch (error) {
      console.error(`images/build.sh node failed (${(error as Error).message.split("\n")[0]}); using synthetic layers only`);
      execFileSync(TOOLS.umoci, ["init", "--layout", layout]);
      execFileSync(TOOLS.umoci, ["new", "--image", `${layout}:latest`]);
    }
    await addLayers(layout, "latest", work, Math.max(30, targetMb - baseMb));
    await skopeoPush(`oci:${layout}:latest`, registry, "bench/app:1");
    const ref = `${registry.host}/bench/app:1`;
    const compressed = execFileSync("du", ["-sm", join(layout, "blobs")], { encoding: "utf8" }).split("\t")[0];
    const raw = JSON.parse(execFileSync(TOOLS.skopeo, ["inspect", "--raw", `oci:${layout}:latest`], { encoding: "utf8" })) as { layers: unknown[] };
    console.log(`layers: ${raw.layers.length}`);

    const rounds = Math.max(3, Number(process.env.III_BENCH_ROUNDS ?? 3));
    const samples = { oursS: [] as number[], baseS: [] as number[], oursKb: [] as number[], baseKb: [] as number[] };
    // One traced pull first, outside the counted rounds: the phase lines it prints cost the process memory of
    // their own (a traced round measured 64 MB against 59-60 untraced).
    {
      const home = join(work, "home-traced");
      const traced = timed(process.execPath, [runner, ref, home, registry.host], { ...process.env, III_IMAGES_TRACE: "1" });
      console.log(`traced pull (not counted): ${traced.seconds.toFixed(2)} s ${(traced.peakKb / 1024).toFixed(0)} MB`);
      await rm(home, { recursive: true, force: true });
    }
    // Interleaved rounds, the order flipped every round, so load from the rest of the host hits both sides alike.
    for (let round = 0; round < rounds; round++) {
      const home = join(work, `home-${round}`);
      const dest = join(work, `skopeo-${round}`);
      const bundle = join(work, `bundle-${round}`);
      const runOurs = () => timed(process.execPath, [runner, ref, home, registry.host], { ...process.env, III_IMAGES_TRACE: "" });
      const runBase = () => {
        const copy = timed(TOOLS.skopeo, ["copy", "--quiet", "--src-tls-verify=false", `docker://${ref}`, `oci:${dest}:app`]);
        const unpack = timed(TOOLS.umoci, ["unpack", "--image", `${dest}:app`, bundle]);
        return { seconds: copy.seconds + unpack.seconds, peakKb: Math.max(copy.peakKb, unpack.peakKb) };
      };
      let ours;
      let base;
      if (round % 2 === 0) {
        ours = runOurs();
        base = runBase();
      } else {
        base = runBase();
        ours = runOurs();
      }
      samples.oursS.push(ours.seconds);
      samples.baseS.push(base.seconds);
      samples.oursKb.push(ours.peakKb);
      samples.baseKb.push(base.peakKb);
      const size = execFileSync("du", ["-sm", join(home, "images", "sha256")], { encoding: "utf8" }).split("\t")[0];
      if (round === 0) console.log(`image: ${ref}, ${compressed} MB compressed blobs, unpacked cache ${size} MB`);
      console.log(`round ${round + 1}: ours ${ours.seconds.toFixed(2)} s ${(ours.peakKb / 1024).toFixed(0)} MB, skopeo+umoci ${base.seconds.toFixed(2)} s ${(base.peakKb / 1024).toFixed(0)} MB`);
      await rm(home, { recursive: true, force: true });
      await rm(dest, { recursive: true, force: true });
      await rm(bundle, { recursive: true, force: true });
    }
    const stats = (values: number[]) => {
      const sorted = [...values].sort((a, b) => a - b);
      return { min: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]!, max: sorted[sorted.length - 1]! };
    };
    const ratios = (a: number[], b: number[]) => stats(a.map((v, i) => v / b[i]!));
    const fmt = (s: { min: number; median: number; max: number }, f: (v: number) => string) => `${f(s.min)} / ${f(s.median)} / ${f(s.max)}`;
    const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;
    const sec = (s: number) => `${s.toFixed(2)} s`;
    const x = (r: number) => `${r.toFixed(2)}x`;
    console.log(`pull + unpack, ${rounds} interleaved rounds, min / median / max (baseline = skopeo copy + umoci unpack)`);
    console.log(`  time      ours ${fmt(stats(samples.oursS), sec)}   baseline ${fmt(stats(samples.baseS), sec)}   ratio ${fmt(ratios(samples.oursS, samples.baseS), x)}  (target <= 0.8x)`);
    console.log(`  peak RSS  ours ${fmt(stats(samples.oursKb), mb)}   baseline ${fmt(stats(samples.baseKb), mb)}   ratio ${fmt(ratios(samples.oursKb, samples.baseKb), x)}  (target <= 2x)`);
  } finally {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
