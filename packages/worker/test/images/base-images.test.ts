import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../../src/images/index.js";
import { TOOLS } from "./fixtures/registry.js";
import { describeTree } from "./fixtures/tree.js";

const BUILD = fileURLToPath(new URL("../../../../images/build.sh", import.meta.url));
const missing = ["/usr/sbin/debootstrap", TOOLS.umoci].filter((p) => !existsSync(p));
if (missing.length) console.warn(`[images] skipping base image tests: missing ${missing.join(", ")}`);
// Shared with images/build.sh's default so the Debian rootfs and the images are built once per machine.
const CACHE = process.env.III_IMAGES_CACHE ?? "/var/tmp/iii-images";

function build(name: string): string {
  const started = Date.now();
  const out = execFileSync("bash", [BUILD, name, "--cache", CACHE], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 900_000 }).trim();
  console.log(`[images] build.sh ${name}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return out;
}

describe.skipIf(missing.length > 0)("base images built offline by images/build.sh", () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-base-"));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  for (const [name, check, cmd] of [
    ["python", ["/usr/bin/python3", "-c", "import sys, venv; print(sys.version_info[0])"], "python3"],
    ["node", ["/usr/local/bin/node", "-e", "console.log(process.versions.node.split('.')[0])"], "node"],
  ] as const) {
    it(`${name}: builds (cached), unpacks like umoci, and its runtime runs in the rootfs`, async () => {
      const layout = build(name);
      const again = build(name);
      expect(again).toBe(layout);
      const home = join(work, `home-${name}`);
      const image = await ensureImage(`oci:${layout}:latest`, { home });
      expect(image.config).toMatchObject({ cmd: [cmd], workingDir: "/workspace", user: { uid: 0, gid: 0 } });
      expect(image.sizeBytes).toBeGreaterThan(50e6);
      const manifest = JSON.parse(await readFile(join(home, "images", "sha256", image.digest.slice(7), "manifest.json"), "utf8"));
      expect(manifest.layers).toHaveLength(2); // Debian, runtime
      const bundle = join(work, `bundle-${name}`);
      execFileSync(TOOLS.umoci, ["unpack", "--image", `${layout}:latest`, bundle], { stdio: "pipe" });
      expect(await describeTree(image.rootfs)).toEqual(await describeTree(join(bundle, "rootfs")));
      const out = execFileSync("chroot", [image.rootfs, ...check], { encoding: "utf8", env: { PATH: image.config.env.PATH } }).trim();
      expect(out).toBe(name === "node" ? "24" : "3");
    }, 1_200_000);
  }
});
