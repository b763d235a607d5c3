import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectKey } from "../../src/paths.js";
import { runWorkerCli } from "../helpers.js";
import { tarBytes, writeLayout } from "../images/fixtures/oci-writer.js";

const dir = mkdtempSync(join(tmpdir(), "iii-prune-projects-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * The image cache is shared by every project of an III_HOME. `prune` in project B kept only B's images: run live, it
 * deleted the lower layer of project A's running VM (the guest's /bin/ls went ENOENT). A start leaves launch.json
 * (image + rootfs) in the worker's managed directory until `remove`; that is what keeps A's image here.
 */
describe("prune in one project and the workers of another", () => {
  it("keeps the image of a worker another project started, and still prunes what nobody uses", async () => {
    const layout = join(dir, "layout");
    const digest = await writeLayout(layout, "1", { layers: [{ tar: await tarBytes([{ name: "bin/app", content: "app" }]), compression: "none" }] });
    const home = join(dir, "home");
    const a = join(dir, "a");
    const b = join(dir, "b");
    mkdirSync(a);
    mkdirSync(b);
    const added = await runWorkerCli(["add", `oci:${layout}:1`, "--name", "web"], { cwd: a, env: { III_HOME: home } });
    expect(added.code, added.stderr).toBe(0);
    const imageDir = join(home, "images", "sha256", digest.slice(7));
    expect(existsSync(imageDir)).toBe(true);
    // What `start web` in project A leaves behind (lifecycle.ts writes the whole LaunchRequest; these are the fields read).
    const managed = join(home, "managed", projectKey(a), "web");
    mkdirSync(managed, { recursive: true });
    writeFileSync(join(managed, "launch.json"), JSON.stringify({ name: "web", cwd: a, spec: { image: `oci:${layout}:1` }, rootfs: join(imageDir, "rootfs") }));

    const pruned = await runWorkerCli(["prune"], { cwd: b, env: { III_HOME: home } });
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.stderr).toMatch(/freed 0B \(0 image\(s\)/);
    expect(existsSync(imageDir)).toBe(true);

    // Once A's worker is removed, nothing references the image: prune in B takes it.
    const removed = await runWorkerCli(["remove", "web"], { cwd: a, env: { III_HOME: home } });
    expect(removed.code, removed.stderr).toBe(0);
    const again = await runWorkerCli(["prune"], { cwd: b, env: { III_HOME: home } });
    expect(again.stderr).toMatch(/removed [0-9a-f]{12} /);
    expect(existsSync(imageDir)).toBe(false);
  });
});
