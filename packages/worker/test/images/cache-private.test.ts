import { spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage } from "../../src/images/index.js";
import { writeLayout } from "./fixtures/oci-writer.js";

/** The review's image: a world-writable /var/tmp and /app, an app owned by uid 1000 with a secret beside it. */
const SPEC = {
  layers: [
    {
      entries: [
        { name: "var/", type: "directory" as const },
        { name: "var/tmp/", type: "directory" as const, mode: 0o1777 },
        { name: "app/", type: "directory" as const, mode: 0o777, uid: 1000, gid: 1000 },
        { name: "app/server.js", content: "console.log('app')\n", uid: 1000, gid: 1000 },
        { name: "app/.env", content: "API_TOKEN=s3cret\n", uid: 1000, gid: 1000 },
      ],
    },
  ],
};

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const setprivMissing = spawnSync("setpriv", ["--version"]).error !== undefined;
const skipReason = !isRoot ? "not running as root (cannot switch to another uid)" : setprivMissing ? "setpriv (util-linux) is not installed" : undefined;
if (skipReason) console.warn(`[images] skipping image-cache privacy tests: ${skipReason}`);

/** Runs `script` as uid/gid 65534 (nobody) with no supplementary groups; returns its exit status and stderr. */
function asNobody(script: string, ...args: string[]): { status: number | null; stderr: string } {
  const result = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script, "sh", ...args], { encoding: "utf8" });
  return { status: result.status, stderr: result.stderr };
}

const modeOf = async (path: string) => (await stat(path)).mode & 0o7777;

describe.skipIf(skipReason !== undefined)("the image cache is closed to other local users (review s14 #8)", () => {
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-private-"));
    // mkdtemp makes 0700: open the test's own dir so that only the cache's modes stand between nobody and the images
    await chmod(work, 0o755);
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  /** The attacker's three moves against a cached rootfs; each must fail. */
  function expectClosed(home: string, rootfs: string) {
    const images = join(home, "images");
    const list = asNobody('ls "$1" "$1/sha256" "$1/blobs/sha256"', images);
    expect(list.status, `nobody listed ${images}`).not.toBe(0);
    expect(list.stderr).toMatch(/Permission denied/);
    const read = asNobody('cat "$1/app/.env"', rootfs);
    expect(read.status, "nobody read app/.env").not.toBe(0);
    expect(read.stderr).toMatch(/Permission denied/);
    for (const dir of ["var/tmp", "app"]) {
      const write = asNobody('echo planted > "$1/from-nobody"', join(rootfs, dir));
      expect(write.status, `nobody wrote into ${dir}`).not.toBe(0);
    }
    // root (this process) sees the image as the image says: the modes inside the rootfs are the guest's
    return Promise.all([readdir(join(rootfs, "var", "tmp")), readdir(join(rootfs, "app")), modeOf(join(rootfs, "var", "tmp"))]).then(([tmp, app, tmpMode]) => {
      expect(tmp).toEqual([]);
      expect(app.sort()).toEqual([".env", "server.js"]);
      expect(tmpMode).toBe(0o1777);
    });
  }

  it("a fresh III_HOME: ensureImage makes III_HOME, images/ and the cache's top dirs 0700", async () => {
    const layout = join(work, "layout");
    await writeLayout(layout, "1", SPEC);
    const home = join(work, "home");
    const image = await ensureImage(`oci:${layout}:1`, { home });
    await expectClosed(home, image.rootfs);
    expect(await modeOf(home)).toBe(0o700);
    for (const dir of ["images", "images/sha256", "images/blobs", "images/blobs/sha256", "images/blobs/partial", "images/refs", "images/tmp"]) {
      expect([dir, await modeOf(join(home, dir))]).toEqual([dir, 0o700]);
    }
    expect(await modeOf(join(home, "images", "sha256", image.digest.slice(7)))).toBe(0o700);
  });

  it("an existing cache an older iii made 0755 is tightened at first use (III_HOME itself is left as it is)", async () => {
    const layout = join(work, "layout-old");
    await writeLayout(layout, "1", SPEC);
    const home = join(work, "home-old");
    for (const dir of ["images/sha256", "images/blobs/sha256", "images/blobs/partial", "images/refs", "images/tmp"]) {
      await mkdir(join(home, dir), { recursive: true, mode: 0o755 });
    }
    await chmod(join(home, "images"), 0o755);
    await chmod(join(home, "images", "tmp"), 0o755);
    expect(await modeOf(join(home, "images"))).toBe(0o755);
    const image = await ensureImage(`oci:${layout}:1`, { home });
    await expectClosed(home, image.rootfs);
    expect(await modeOf(home)).toBe(0o755);
    for (const dir of ["images", "images/sha256", "images/blobs", "images/refs", "images/tmp"]) {
      expect([dir, await modeOf(join(home, dir))]).toEqual([dir, 0o700]);
    }
  });
});
