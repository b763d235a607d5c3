import { execFileSync } from "node:child_process";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureImage, formatImageSummary } from "../../src/images/index.js";
import { LAYERED } from "./fixtures/images.js";
import { writeLayout, type ImageSpec } from "./fixtures/oci-writer.js";
import { missingTools, TOOLS } from "./fixtures/registry.js";
import { describeTree } from "./fixtures/tree.js";

const missing = missingTools();
if (missing) console.warn(`[images] skipping local-source tests: ${missing}`);

/** umoci 0.4 and docker-archive cannot carry zstd: the comparison image is all gzip, the mixed one is compared with ours. */
function withCompression(spec: ImageSpec, compression: "gzip"): ImageSpec {
  return { ...spec, layers: spec.layers.map((l) => ({ ...l, compression })) };
}

describe.skipIf(missing !== undefined)("local sources and layer application (compared with umoci unpack)", () => {
  let work: string;
  let home: string;
  let layout: string;
  const mixedLayout = () => join(work, "mixed");

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "iii-img-local-"));
    home = join(work, "home");
    layout = join(work, "layout");
    await writeLayout(layout, "1", withCompression(LAYERED, "gzip"));
    await writeLayout(mixedLayout(), "1", LAYERED);
  });

  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it("oci: unpacks to the same tree as umoci unpack, without setuid bits", async () => {
    const image = await ensureImage(`oci:${layout}:1`, { home });
    expect(image.rootfs).toBe(join(home, "images", "sha256", image.digest.slice(7), "rootfs"));
    execFileSync(TOOLS.umoci, ["unpack", "--image", `${layout}:1`, join(work, "bundle")], { stdio: "pipe" });
    const ours = await describeTree(image.rootfs);
    const theirs = await describeTree(join(work, "bundle", "rootfs"));
    expect(ours).toEqual(theirs);
    // spot checks of the semantics, so an equal-but-wrong umoci would not hide a bug
    expect(ours["data/a.txt"]).toBeUndefined();
    expect(ours["data/sub"]?.type).toBe("file");
    expect(Object.keys(ours).filter((k) => k.startsWith("opaque/"))).toEqual(["opaque/new1"]);
    expect(ours["keep"]).toMatchObject({ type: "symlink", target: "data" });
    expect(ours["usr/lib/liby.so"]?.type).toBe("file");
    expect(ours["bin/tool-hard"]?.links).toEqual(["bin/tool", "bin/tool-hard"]);
    expect(ours["new/group-hard"]?.links).toEqual(["etc/group", "new/group-hard"]);
    expect(ours["home/app"]).toMatchObject({ uid: 1000, gid: 1001, mode: 0o700 });
    expect(ours["tmp"]?.mode).toBe(0o1777);
    expect(ours["run/fifo"]?.type).toBe("fifo");
    expect((await stat(join(image.rootfs, "bin/newsuid"))).mode & 0o7777).toBe(0o755);
    expect((await stat(join(image.rootfs, "bin/sgid-dir"))).mode & 0o7777).toBe(0o775);
  });

  it("gzip, zstd and uncompressed layers give the same tree", async () => {
    const gzip = await ensureImage(`oci:${layout}:1`, { home });
    const mixed = await ensureImage(`oci:${mixedLayout()}:1`, { home });
    expect(mixed.digest).not.toBe(gzip.digest);
    expect(await describeTree(mixed.rootfs)).toEqual(await describeTree(gzip.rootfs));
  });

  it("honours the image config: Entrypoint, Cmd, Env, WorkingDir, User via /etc/passwd, StopSignal, worker.yaml", async () => {
    const image = await ensureImage(`oci:${layout}:1`, { home });
    expect(image.cached).toBe(true);
    expect(image.config).toMatchObject({
      entrypoint: ["/bin/tool"],
      cmd: ["--serve"],
      env: { A: "1", PATH: "/bin:/usr/bin", HOME: "/home/app" },
      workingDir: "/srv",
      user: { spec: "app", uid: 1000, gid: 1001, additionalGids: [2000], home: "/home/app", name: "app" },
      exposedPorts: [{ port: 8080, protocol: "tcp" }],
      stopSignal: "SIGINT",
    });
    expect(image.manifest).toMatchObject({ name: "demo", version: "1.2.3", description: "a demo worker", resources: { cpus: "1", memory: "256Mi" } });
    expect(image.sizeBytes).toBeGreaterThan(0);
    expect(formatImageSummary(image)).toEqual([
      "demo 1.2.3 - a demo worker",
      "resources: cpus 1, memory 256Mi",
      expect.stringMatching(/^image oci:.*:1 sha256:[a-f0-9]{12} \d+(\.\d)? (B|KiB) \(cached\)$/),
      'runs ["/bin/tool","--serve"] as app:1001 in /srv',
      "exposes 8080/tcp",
    ]);
  });

  it("a busybox image built and changed with umoci unpacks like umoci unpacks it", async () => {
    const bbLayout = join(work, "bb");
    const bundle = join(work, "bb-bundle");
    const run = (...args: string[]) => execFileSync(TOOLS.umoci, args, { stdio: "pipe" });
    run("init", "--layout", bbLayout);
    run("new", "--image", `${bbLayout}:t`);
    run("unpack", "--image", `${bbLayout}:t`, bundle);
    const rootfs = join(bundle, "rootfs");
    for (const d of ["bin", "etc", "var/lib/old", "var/cache"]) await mkdir(join(rootfs, d), { recursive: true });
    execFileSync("cp", ["/bin/busybox", join(rootfs, "bin/busybox")]);
    for (const applet of ["sh", "ls", "cat", "echo"]) execFileSync("ln", ["-s", "busybox", join(rootfs, "bin", applet)]);
    execFileSync("sh", ["-c", `echo 'root:x:0:0::/root:/bin/sh' > ${rootfs}/etc/passwd; echo one > ${rootfs}/var/lib/old/f; echo c > ${rootfs}/var/cache/c; ln ${rootfs}/etc/passwd ${rootfs}/etc/passwd.hard`]);
    run("repack", "--refresh-bundle", "--image", `${bbLayout}:t`, bundle);
    // second layer: delete a file, replace a directory's content, add a hardlink
    execFileSync("sh", ["-c", `rm -rf ${rootfs}/var/lib/old ${rootfs}/bin/cat && mkdir -p ${rootfs}/var/lib/new && echo two > ${rootfs}/var/lib/new/g && ln ${rootfs}/bin/busybox ${rootfs}/bin/bb-hard`]);
    run("repack", "--refresh-bundle", "--image", `${bbLayout}:t`, bundle);
    run("config", "--image", `${bbLayout}:t`, "--config.entrypoint", "/bin/sh", "--config.workingdir", "/var");
    const image = await ensureImage(`oci:${bbLayout}:t`, { home });
    const reference = join(work, "bb-ref");
    run("unpack", "--image", `${bbLayout}:t`, reference);
    expect(await describeTree(image.rootfs)).toEqual(await describeTree(join(reference, "rootfs")));
    const manifest = JSON.parse(await readFile(join(home, "images", "sha256", image.digest.slice(7), "manifest.json"), "utf8"));
    expect(manifest.layers).toHaveLength(2);
    expect(image.config.entrypoint).toEqual(["/bin/sh"]);
    expect(image.config.workingDir).toBe("/var");
  });

  it("oci-archive:, docker-archive: (written by skopeo) and dir: sources", async () => {
    const archive = join(work, "layout.tar");
    execFileSync("tar", ["-C", layout, "-cf", archive, "."]);
    const fromLayout = await ensureImage(`oci:${layout}:1`, { home });
    const fromArchive = await ensureImage(`oci-archive:${archive}:1`, { home });
    expect(fromArchive.digest).toBe(fromLayout.digest);
    expect(fromArchive.cached).toBe(true);

    const dockerArchive = join(work, "docker.tar");
    execFileSync(TOOLS.skopeo, ["copy", "--quiet", `oci:${layout}:1`, `docker-archive:${dockerArchive}:test/app:1`], { stdio: "pipe" });
    const fromDocker = await ensureImage(`docker-archive:${dockerArchive}`, { home });
    expect(fromDocker.cached).toBe(false);
    expect(await describeTree(fromDocker.rootfs)).toEqual(await describeTree(fromLayout.rootfs));
    expect(fromDocker.config.user.uid).toBe(1000);
    const again = await ensureImage(`docker-archive:${dockerArchive}`, { home });
    expect(again.cached).toBe(true);

    const dir = await ensureImage(`dir:${fromLayout.rootfs}`, { home });
    expect(dir.rootfs).toBe(fromLayout.rootfs);
    expect(dir.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(dir.config.user).toMatchObject({ uid: 0, gid: 0 });
    expect(dir.manifest?.name).toBe("demo");

    // nothing left in the staging area
    expect(await readdir(join(home, "images", "tmp"))).toEqual([]);
    expect((await lstat(join(home, "images", "sha256", fromDocker.digest.slice(7), "image.json"))).isFile()).toBe(true);
  });

  it("--pull=never fails for an image that is not cached", async () => {
    await expect(ensureImage(`oci:${layout}:nope`, { home, pull: "never" })).rejects.toMatchObject({ code: "ImagePullFailed" });
    await expect(ensureImage(`oci:${layout}:nope`, { home })).rejects.toThrow(/no image tagged "nope"/);
  });
});
