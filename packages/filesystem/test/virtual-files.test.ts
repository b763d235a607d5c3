import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FilesystemError, mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, shOk, tempDir } from "./helpers.js";

describe.skipIf(!fuse.ok)("virtual files and read-only mode", () => {
  let base: string;
  const handles: MountHandle[] = [];
  let root: string;
  let mnt: string;
  let initSrc: string;

  beforeAll(async () => {
    base = tempDir("virtual");
    root = path.join(base, "root");
    mnt = path.join(base, "mnt");
    fs.mkdirSync(root);
    fs.mkdirSync(mnt);
    // A host file already named init.krun must be shadowed, never touched.
    fs.writeFileSync(path.join(root, "init.krun"), "host copy");
    fs.mkdirSync(path.join(root, ".iii"));
    fs.writeFileSync(path.join(root, ".iii", "hidden"), "host");
    fs.writeFileSync(path.join(root, "plain"), "plain file");
    initSrc = path.join(base, "init-src");
    fs.writeFileSync(initSrc, crypto.randomBytes(24 * 1024 * 1024 + 123));
    handles.push(
      await mountPassthrough({
        root,
        mountpoint: mnt,
        virtualFiles: {
          "/init.krun": { hostPath: initSrc },
          "/.iii/env.json": { content: '{"A":"1"}\n' },
          "/.iii/sub/token": { content: new Uint8Array([1, 2, 3]) },
        },
      }),
    );
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  it("serves /init.krun byte-identical, 0755, listed in /", async () => {
    await shOk(`cmp init.krun "${initSrc}"`, mnt);
    expect(await shOk("stat -c '%a %U %s %F' init.krun", mnt)).toBe(`755 root ${24 * 1024 * 1024 + 123} regular file\n`);
    const ls = await shOk("ls -a", mnt);
    expect(ls.split("\n").filter(Boolean).sort()).toEqual([".", "..", ".iii", "init.krun", "plain"]);
    expect(await shOk("cat .iii/env.json; ls -a .iii; od -An -tx1 .iii/sub/token | tr -d ' '", mnt)).toBe('{"A":"1"}\n.\n..\nenv.json\nsub\n010203\n');
    expect(await shOk("test -x init.krun && echo exec", mnt)).toBe("exec\n");
  });

  it("refuses every mutation with the errno of a read-only file", async () => {
    const cases: [string, RegExp][] = [
      ["echo x > init.krun", /Permission denied/],
      ["echo x >> init.krun", /Permission denied/],
      ["truncate -s 0 init.krun", /Permission denied/],
      ["chmod 600 init.krun", /Operation not permitted/],
      ["chown 1:1 init.krun", /Operation not permitted/],
      ["touch init.krun", /Permission denied/],
      ["python3 -c 'import os; os.utime(\"init.krun\", (1, 1))'", /PermissionError: \[Errno 1\] Operation not permitted/],
      ["setfattr -n user.x -v 1 init.krun", /Operation not permitted/],
      ["rm -f init.krun", /Operation not permitted/],
      ["mv init.krun moved", /Operation not permitted/],
      ["mv plain init.krun", /Operation not permitted/],
      ["ln -s plain init.krun", /File exists/],
      ["ln plain init.krun", /File exists/],
      ["ln init.krun hardlink", /Operation not permitted/],
      ["mkdir init.krun", /File exists/],
      ["mkfifo init.krun", /File exists/],
      ["rm -rf .iii", /Operation not permitted/],
      ["echo x > .iii/new", /Permission denied/],
      ["echo x > .iii/env.json", /Permission denied/],
      ["mv .iii elsewhere", /Operation not permitted/],
    ];
    for (const [cmd, expected] of cases) {
      const r = await sh(`${cmd} 2>&1; echo "rc=$?"`, mnt);
      expect(r.stdout + r.stderr, cmd).toMatch(expected);
      expect(r.stdout, cmd).not.toMatch(/rc=0/);
    }
    await shOk(`cmp init.krun "${initSrc}"`, mnt);
    expect(fs.readFileSync(path.join(root, "init.krun"), "utf8")).toBe("host copy");
    expect(fs.readdirSync(path.join(root, ".iii"))).toEqual(["hidden"]);
    expect(fs.existsSync(path.join(root, "moved"))).toBe(false);
  });

  it("read-only mode answers EROFS to every mutation", async () => {
    const roMnt = path.join(base, "ro");
    fs.mkdirSync(roMnt);
    const h = await mountPassthrough({ root, mountpoint: roMnt, readOnly: true, virtualFiles: { "/init.krun": { content: "#!/bin/sh\n" } } });
    handles.push(h);
    const cases = [
      "echo x > newfile",
      "echo x >> plain",
      "truncate -s 0 plain",
      "chmod 600 plain",
      "chown 1:1 plain",
      "touch -d 2001-01-01 plain",
      "setfattr -n user.x -v 1 plain",
      "rm plain",
      "mv plain plain2",
      "ln -s plain sym",
      "ln plain hard",
      "mkdir dir",
      "mkfifo fifo",
      "rmdir .iii",
      "echo x > init.krun",
    ];
    for (const cmd of cases) {
      const r = await sh(`${cmd} 2>&1; echo "rc=$?"`, roMnt);
      expect(r.stdout + r.stderr, cmd).toMatch(/Read-only file system/);
      expect(r.stdout, cmd).not.toMatch(/rc=0/);
    }
    expect(await shOk("cat plain; cat init.krun", roMnt)).toBe("plain file#!/bin/sh\n");
    expect(fs.readFileSync(path.join(root, "plain"), "utf8")).toBe("plain file");
    await new Promise((r) => setTimeout(r, 400)); // stats from the server process arrive every 250 ms
    expect(h.stats().errors.EROFS).toBeGreaterThanOrEqual(cases.length);
  });

  it("rejects virtual paths outside /init.krun and /.iii/", async () => {
    const other = path.join(base, "other");
    fs.mkdirSync(other);
    await expect(mountPassthrough({ root, mountpoint: other, virtualFiles: { "/etc/passwd": { content: "x" } } })).rejects.toMatchObject({
      code: "VirtualFileInvalid",
    });
    await expect(mountPassthrough({ root, mountpoint: other, virtualFiles: { "/.iii/../x": { content: "x" } } })).rejects.toBeInstanceOf(FilesystemError);
  });
});
