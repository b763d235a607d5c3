import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureImage } from "../src/images/index.js";
import { runWorkerCli } from "./helpers.js";

// Review rev6i (left open there): root adds `dir:/home/alice/rootfs`; alice edits its bin/sh; root's worker boots
// her code as guest root, with root's writable shares and network. A dir: rootfs is booted in place, so another
// user's hand on it is refused as an `oci:` layout's or a WASM module's is.
const root = process.geteuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), "iii-rev6i-dir-rootfs-"));
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function rootfs(name: string): string {
  const path = join(dir, name);
  mkdirSync(join(path, "bin"), { recursive: true });
  mkdirSync(join(path, "tmp"));
  chmodSync(join(path, "tmp"), 0o1777); // an image's /tmp: writable by all, sticky
  writeFileSync(join(path, "bin/sh"), "#!/bin/true\n", { mode: 0o755 });
  return path;
}

describe.skipIf(!root)("a dir: rootfs another local user can change (rev6i)", () => {
  it("is refused when it or a directory above it is another user's, or it or a top-level entry is writable by others; root's own boots", async () => {
    const home = join(dir, "home");
    const refused = (path: string) => ensureImage(`dir:${path}`, { home }).then(() => "accepted", (error: Error & { code?: string }) => `${error.code}: ${error.message}`);

    const theirs = rootfs("theirs");
    chownSync(theirs, 65534, 65534);
    expect(await refused(theirs)).toMatch(/^ImageInvalid: dir:.*theirs: refusing a rootfs another user can change: .*theirs belongs to uid 65534; copy it/);

    const theirBin = rootfs("their-bin");
    chmodSync(join(theirBin, "bin"), 0o777);
    expect(await refused(theirBin)).toMatch(/their-bin\/bin is writable by other users \(mode 0777\)/);

    const openTop = rootfs("open-top");
    chmodSync(openTop, 0o777);
    expect(await refused(openTop)).toMatch(/open-top is writable by other users \(mode 0777\)/);

    const pub = join(dir, "pub");
    mkdirSync(pub);
    chmodSync(pub, 0o777);
    const under = join(pub, "rootfs");
    mkdirSync(under);
    expect(await refused(under)).toMatch(/pub is writable by other users and not sticky \(mode 0777\)/);

    expect(await refused(rootfs("ours"))).toBe("accepted");
    // Through the CLI: `start` says so in one line, with the code, exit 1, before anything boots.
    const project = join(dir, "project");
    mkdirSync(project);
    const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: home } });
    expect((await cli(["add", `dir:${theirBin}`, "--name", "w", "--", "/bin/sh", "-c", "true"])).code).toBe(0);
    const start = await cli(["start", "w"]);
    expect(start.code).toBe(1);
    expect(start.stderr).toMatch(/^iii-worker: .*their-bin\/bin is writable by other users.*\[ImageInvalid\]\n$/);
  }, 60_000);
});
