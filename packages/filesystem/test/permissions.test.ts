// `defaultPermissions` on an `allowOther` mount: the kernel checks every caller's rights
// against the modes and owners the mount reports, so another host user gets what a real
// file system would give it. Without it the server, acting as root, let uid 65534 write
// a root-owned 0644 file, chmod it and remove entries it does not own.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, shOk, tempDir } from "./helpers.js";

const NOBODY = "setpriv --reuid 65534 --regid 65534 --clear-groups";

describe.skipIf(!fuse.ok)("default_permissions on an allow-other mount", () => {
  let base: string;
  let root: string;
  let mnt: string;
  let handle: MountHandle | undefined;

  beforeAll(async () => {
    base = tempDir("perm");
    fs.chmodSync(base, 0o755);
    root = path.join(base, "root");
    mnt = path.join(base, "mnt");
    fs.mkdirSync(root, { mode: 0o755 });
    fs.mkdirSync(mnt);
    handle = await mountPassthrough({ root, mountpoint: mnt, allowOther: true, defaultPermissions: true });
    // Made by root through the mount: root-owned, 0644 files, 0755 and sticky 1777 dirs.
    await shOk("set -e; umask 022; echo root-data > f; mkdir d; echo inner > d/inner; mkdir t; chmod 1777 t; echo mine > t/rootfile", mnt);
  });

  afterAll(async () => {
    await handle?.unmount();
    if (base) rmrf(base);
  });

  const asNobody = (script: string) => sh(`${NOBODY} sh -c '${script}'`, mnt);

  it("mountinfo carries default_permissions and allow_other", () => {
    const line = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === mnt) ?? "";
    expect(line).toContain("default_permissions");
    expect(line).toContain("allow_other");
  });

  it("uid 65534 cannot open a root-owned 0644 file for writing, but can read it", async () => {
    const w = await asNobody("echo evil >> f");
    expect(w.code).not.toBe(0);
    expect(w.stderr).toMatch(/Permission denied/);
    expect((await asNobody("cat f")).stdout).toBe("root-data\n");
    expect(fs.readFileSync(path.join(root, "f"), "utf8")).toBe("root-data\n");
  });

  it("uid 65534 cannot chmod, utime, or remove what it does not own", async () => {
    expect((await asNobody("chmod 666 f")).stderr).toMatch(/Operation not permitted/);
    expect((await asNobody("touch -d 2001-01-01 f")).code).not.toBe(0);
    expect((await asNobody("rm -f d/inner")).stderr).toMatch(/Permission denied/);
    // Sticky directory: a file of another user can be neither removed nor renamed.
    expect((await asNobody("rm -f t/rootfile")).stderr).toMatch(/Operation not permitted/);
    expect((await asNobody("mv t/rootfile t/stolen")).code).not.toBe(0);
    expect(fs.statSync(path.join(root, "f")).mode & 0o777).toBe(0o644);
    expect(fs.existsSync(path.join(root, "d", "inner"))).toBe(true);
    expect(fs.existsSync(path.join(root, "t", "rootfile"))).toBe(true);
  });

  it("what the mode allows still works for uid 65534 (its own file in the sticky dir)", async () => {
    const r = await asNobody("echo own > t/own && cat t/own && rm t/own");
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("own\n");
  });
});
