// protectedPaths: in a writable share the guest may read the files the host acts on later (a project's
// iii.workers.yaml, its .git) but change nothing about them, not even by moving a directory above them away.
// Every attempt runs through a real mount, as virtiofsd's requests do, from a separate shell process.
import fs from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FilesystemError, mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, shOk, snapshot, tempDir } from "./helpers.js";

let base: string;
let root: string;
let mnt: string;
let handle: MountHandle | undefined;

const PROTECTED = ["/iii.workers.yaml", "/iii.workers.yaml.lock", "/.git", "/sub/deep/settings.yaml"];

function seed(): void {
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(path.join(root, ".git", "hooks"), { recursive: true });
  fs.writeFileSync(path.join(root, ".git", "config"), "[core]\n\tbare = false\n");
  fs.writeFileSync(path.join(root, ".git", "hooks", "pre-commit.sample"), "#!/bin/sh\n");
  fs.writeFileSync(path.join(root, "iii.workers.yaml"), "workers:\n  api:\n    image: dir:/srv/api\n");
  fs.mkdirSync(path.join(root, "sub", "deep"), { recursive: true });
  fs.writeFileSync(path.join(root, "sub", "deep", "settings.yaml"), "x: 1\n");
  fs.writeFileSync(path.join(root, "app.js"), "console.log(1)\n");
}

async function mount(protectedPaths = PROTECTED): Promise<void> {
  handle = await mountPassthrough({ root, mountpoint: mnt, protectedPaths });
}

beforeAll(() => {
  base = tempDir("protected");
  root = path.join(base, "root");
  mnt = path.join(base, "mnt");
  fs.mkdirSync(mnt);
});
afterEach(async () => {
  await handle?.unmount();
  handle = undefined;
});
afterAll(() => rmrf(base));

/** Each attack: one shell line run in the mount; it must fail with "Read-only file system". */
const ATTACKS: Record<string, string> = {
  "rewrite the workers file": "echo 'workers: {api: {mounts: [\"/:/host\"]}}' > iii.workers.yaml",
  "append to it": "echo x >> iii.workers.yaml",
  "truncate it": "truncate -s 0 iii.workers.yaml",
  "remove it": "rm -f iii.workers.yaml",
  "rename it away": "mv iii.workers.yaml old.yaml",
  "replace it by rename": "echo evil > new.yaml && mv -f new.yaml iii.workers.yaml",
  "hard-link it, then write the link": "ln iii.workers.yaml hl && echo evil > hl",
  "chmod it": "chmod 777 iii.workers.yaml",
  "set an xattr on it": "setfattr -n user.x -v 1 iii.workers.yaml",
  "plant a symlink at the lock": "rm -f iii.workers.yaml.lock; ln -s /etc/passwd iii.workers.yaml.lock",
  "add a git hook": "printf '#!/bin/sh\\ntouch /tmp/pwned\\n' > .git/hooks/pre-commit",
  "rewrite .git/config": "echo '[core] fsmonitor = /tmp/evil' >> .git/config",
  "make a dir in .git": "mkdir .git/hooks2",
  "rename .git away": "mv .git git-old",
  "remove a hook sample": "rm .git/hooks/pre-commit.sample",
  "move a directory above a protected file": "mv sub sub-old",
  "rename over a directory above one": "mkdir -p other/deep && mv -T other sub",
  "remove the directory above one": "rm -rf sub/deep",
  "rewrite the nested file": "echo 'x: 2' > sub/deep/settings.yaml",
};

describe.skipIf(!fuse.ok)("protectedPaths", () => {
  for (const [what, script] of Object.entries(ATTACKS)) {
    it(`refuses: ${what}`, async () => {
      seed();
      const before = await snapshot(root);
      const beforeText = fs.readFileSync(path.join(root, "iii.workers.yaml"), "utf8");
      await mount();
      const r = await sh(script, mnt);
      expect(r.code, `${script} should fail`).not.toBe(0);
      expect(r.stderr).toMatch(/Read-only file system/);
      await handle!.unmount();
      handle = undefined;
      // Whatever the script made beside them (hl, new.yaml, other/) may stay; the protected entries are as they were.
      const after = await snapshot(root);
      const kept = (lines: string[]) => lines.filter((l) => /(\.\/\.git|iii\.workers\.yaml|\.\/sub)/.test(l));
      expect(kept(after)).toEqual(kept(before));
      expect(fs.readFileSync(path.join(root, "iii.workers.yaml"), "utf8")).toBe(beforeText);
      expect(fs.existsSync(path.join(root, ".git", "hooks", "pre-commit"))).toBe(false);
    });
  }

  it("refuses creating a protected name that does not exist yet (a .git planted in a project without one)", async () => {
    seed();
    fs.rmSync(path.join(root, ".git"), { recursive: true });
    fs.rmSync(path.join(root, "iii.workers.yaml"));
    await mount();
    for (const script of ["mkdir -p .git/hooks", "echo 'workers: {}' > iii.workers.yaml", "ln -s app.js iii.workers.yaml", "mkfifo iii.workers.yaml"]) {
      const r = await sh(script, mnt);
      expect(r.code, script).not.toBe(0);
      expect(r.stderr, script).toMatch(/Read-only file system/);
    }
    expect(fs.existsSync(path.join(root, ".git"))).toBe(false);
    expect(fs.existsSync(path.join(root, "iii.workers.yaml"))).toBe(false);
  });

  it("leaves the rest of the share writable and the protected files readable", async () => {
    seed();
    await mount();
    const out = await shOk(
      "cat iii.workers.yaml .git/config >/dev/null && echo 'console.log(2)' > app.js && mkdir -p src/x && mv app.js src/x/ && " +
        "touch sub/new && chmod 700 sub && git_sample=$(cat .git/hooks/pre-commit.sample) && echo ok",
      mnt,
    );
    expect(out.trim()).toBe("ok");
    expect(fs.readFileSync(path.join(root, "src", "x", "app.js"), "utf8")).toBe("console.log(2)\n");
  });

  it("refuses a protected path that is not an absolute guest path below the root", async () => {
    seed();
    for (const bad of ["/", "iii.workers.yaml", "/a/../b", "/a//b", "/a/"]) {
      await expect(mountPassthrough({ root, mountpoint: mnt, protectedPaths: [bad] })).rejects.toBeInstanceOf(FilesystemError);
    }
  });

  // review rev6g: a writable share holding another project (`-m ~/code:/code`, or a monorepo's nested projects in
  // `iii worker dev`) let the guest rewrite that project's iii.workers.yaml, and its next `start` mounted a host
  // directory of the guest's choosing. protectedNames keeps the name read-only at every depth, on the JS side and
  // on the shim's fast paths (open for writing, chmod, utimens, create and mkdir are answered there).
  describe("protectedNames", () => {
    const NAMES = ["iii.workers.yaml", "iii.workers.yaml.lock"];
    const NESTED: Record<string, string> = {
      "rewrite a nested workers file": "echo 'workers: {api: {mounts: [\"/etc:/e\"]}}' > code/p1/iii.workers.yaml",
      "append to it": "echo x >> code/p1/iii.workers.yaml",
      "truncate it": "truncate -s 0 code/p1/iii.workers.yaml",
      "open it O_TRUNC without writing": ": > code/p1/iii.workers.yaml",
      "chmod it": "chmod 666 code/p1/iii.workers.yaml",
      "touch it": "touch -d 2001-01-01 code/p1/iii.workers.yaml",
      "set an xattr on it": "setfattr -n user.x -v 1 code/p1/iii.workers.yaml",
      "remove it": "rm -f code/p1/iii.workers.yaml",
      "rename it away": "mv code/p1/iii.workers.yaml code/p1/old.yaml",
      "replace it by rename": "echo evil > code/p1/new.yaml && mv -f new.yaml code/p1/iii.workers.yaml 2>/dev/null || mv -f code/p1/new.yaml code/p1/iii.workers.yaml",
      "hard-link it": "ln code/p1/iii.workers.yaml code/p1/hl",
      "remove its lock and plant a symlink": "rm -f code/p1/iii.workers.yaml.lock; ln -s /etc/passwd code/p1/iii.workers.yaml.lock",
      "create one in another project": "mkdir -p code/p3 && echo 'workers: {}' > code/p3/iii.workers.yaml",
      "make a directory of the name": "mkdir -p code/p3 && mkdir code/p3/iii.workers.yaml",
      "make a fifo of the name": "mkdir -p code/p3 && mkfifo code/p3/iii.workers.yaml",
    };
    const seedNested = () => {
      seed();
      fs.mkdirSync(path.join(root, "code", "p1"), { recursive: true });
      fs.writeFileSync(path.join(root, "code", "p1", "iii.workers.yaml"), "workers:\n  victim:\n    image: dir:/srv\n");
      fs.writeFileSync(path.join(root, "code", "p1", "iii.workers.yaml.lock"), "");
      fs.chmodSync(path.join(root, "code", "p1", "iii.workers.yaml"), 0o644);
    };
    for (const [what, script] of Object.entries(NESTED)) {
      it(`refuses: ${what}`, async () => {
        seedNested();
        const file = path.join(root, "code", "p1", "iii.workers.yaml");
        const before = fs.lstatSync(file);
        const text = fs.readFileSync(file, "utf8");
        handle = await mountPassthrough({ root, mountpoint: mnt, protectedPaths: PROTECTED, protectedNames: NAMES, stableInodes: true });
        const r = await sh(script, mnt);
        expect(r.code, `${script} should fail`).not.toBe(0);
        expect(r.stderr).toMatch(/Read-only file system/);
        await handle.unmount();
        handle = undefined;
        const after = fs.lstatSync(file);
        expect(fs.readFileSync(file, "utf8")).toBe(text);
        expect([after.ino, after.mode, after.mtimeMs, after.nlink]).toEqual([before.ino, before.mode, before.mtimeMs, before.nlink]);
        expect(fs.lstatSync(path.join(root, "code", "p1", "iii.workers.yaml.lock")).isFile()).toBe(true);
        expect(fs.existsSync(path.join(root, "code", "p3", "iii.workers.yaml"))).toBe(false);
      });
    }

    it("leaves the rest writable: a directory above one moves with it, other names in it change", async () => {
      seedNested();
      handle = await mountPassthrough({ root, mountpoint: mnt, protectedPaths: PROTECTED, protectedNames: NAMES });
      const out = await shOk("cat code/p1/iii.workers.yaml >/dev/null && echo hi > code/p1/app.js && touch code/p1 && mv code/p1 code/p1-moved && echo ok", mnt);
      expect(out.trim()).toBe("ok");
      expect(fs.readFileSync(path.join(root, "code", "p1-moved", "iii.workers.yaml"), "utf8")).toMatch(/victim/);
      expect(fs.readFileSync(path.join(root, "code", "p1-moved", "app.js"), "utf8")).toBe("hi\n");
    });

    it("refuses a protected name that is not one entry name", async () => {
      seed();
      for (const bad of ["", ".", "..", "a/b", "a\0b", "x".repeat(256)]) {
        await expect(mountPassthrough({ root, mountpoint: mnt, protectedNames: [bad] })).rejects.toBeInstanceOf(FilesystemError);
      }
    });
  });
});
