// Real tools through a real mount, compared with the same script on a raw directory.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, setattrShimPath, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, shOk, snapshot, tempDir } from "./helpers.js";

const SCRIPT = String.raw`
set -e
mkdir src
cd src
for i in $(seq 1 40); do echo "file $i" > f$i; done
mkdir -p deep/a/b/c/d/e/f/g && echo leaf > deep/a/b/c/d/e/f/g/leaf
ln -s f1 link1
ln -s /nonexistent/target dangling
ln f2 hard2
chmod 640 f3
chmod 4755 f4
chmod 1777 deep
chown 1:2 f5
chown -h 3:4 link1
setfattr -n user.test -v hello f6
setfattr -n user.bin -v 0x00ff10 f7
setfattr -x user.test f6
setfattr -n user.kept -v yes f6
dd if=/dev/urandom of=rand bs=64k count=20 status=none
find . -exec touch -h -d '2001-02-03 04:05:06.250' {} +
cd ..
cp -a src copy
tar --xattrs -cf archive.tar src
mkdir untar
tar --xattrs -xf archive.tar -C untar
rm archive.tar
git init -q repo
cp src/f* repo/
cd repo
git add .
git -c user.email=t@e -c user.name=t commit -qm init
echo changed >> f1
git status --porcelain > ../git-status.txt
git log --format=%s > ../git-log.txt
rm -rf .git
cd ..
du -a --apparent-size src | LC_ALL=C sort -k2 > du.txt
find src -name 'f1*' | LC_ALL=C sort > find.txt
mkfifo fifo1
python3 -c '
import socket, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind("sock1"); s.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect("sock1")
a, _ = s.accept(); c.sendall(b"ping"); assert a.recv(4) == b"ping"
open("sock-ok", "w").write("ok\n")
'
(echo through-fifo > fifo1 &) ; cat fifo1 > fifo-read.txt
truncate -s 5G big
printf tail | dd of=big bs=1 seek=$((5 * 1024 * 1024 * 1024)) conv=notrunc status=none
tail -c 4 big > big-tail.txt
stat -c %s big > big-size.txt
rm big
echo one > m1; echo two > m2; mv m1 m2
mkdir d1 d2; echo x > d1/x; mv -T d1 d2
mkdir -p tree; (cd tree; p=.; for i in $(seq 1 40); do p=$p/n$i; done; mkdir -p $p; echo bottom > $p/file)
rm -rf tree copy/deep
touch -d '1999-12-31 23:59:59' m2
echo appended >> m2
touch -d '1999-12-31 23:59:58' m2
exec 3<>excl; (set -C; echo a > excl 2>/dev/null) && echo noclobber-broken > excl-status || echo refused > excl-status
`;

describe.skipIf(!fuse.ok)("passthrough: real tools give the same result as on the raw directory", () => {
  let base: string;
  let handle: MountHandle | undefined;
  const dirs = { raw: "", backing: "", mnt: "" };

  beforeAll(async () => {
    base = tempDir("tools");
    for (const k of Object.keys(dirs) as (keyof typeof dirs)[]) {
      dirs[k] = path.join(base, k);
      fs.mkdirSync(dirs[k]);
    }
    // Host inode numbers: the script's du and cp -a must see its hard links as one file, as on the raw dir.
    handle = await mountPassthrough({ root: dirs.backing, mountpoint: dirs.mnt, useIno: true });
  });

  afterAll(async () => {
    await handle?.unmount();
    if (base) rmrf(base);
  });

  it("runs the tool script identically", async () => {
    await shOk(SCRIPT, dirs.raw, 120_000);
    await shOk(SCRIPT, dirs.mnt, 120_000);
    // tar x sets times with utimensat(UTIME_OMIT, mtime): libfuse 2.9 drops such a
    // setattr unless the server runs with the setattr shim (isolation "process", the
    // default when built). Without the shim (no C compiler at build time) untar/ times
    // are excluded, and the README says so.
    const opts = { ignoreTimesUnder: setattrShimPath() ? [] : ["untar"] };
    if (!setattrShimPath()) console.log("[@iii/filesystem] setattr shim not built: tar x mtimes not compared");
    const raw = await snapshot(dirs.raw, opts);
    const viaMount = await snapshot(dirs.mnt, opts);
    const backing = await snapshot(dirs.backing, opts);
    expect(viaMount).toEqual(raw);
    // The backing directory has the same names and content, but nothing the guest made
    // privileged: no setuid/sticky bits, guest owners, FIFOs or sockets (host-privilege.test.ts).
    const names = (lines: string[]) => lines.slice(0, lines.indexOf("--- md5")).map((l) => l.split(" ").slice(5).join(" ")).sort();
    expect(names(backing)).toEqual(names(raw));
    const md5 = (lines: string[]) => lines.slice(lines.indexOf("--- md5") + 1, lines.indexOf("--- xattrs")).filter((l) => !/ \.\/(fifo1|sock1)$/.test(l));
    expect(md5(backing)).toEqual(md5(raw));
    expect(await shOk("find . -perm /7000 -o ! -user root -o -type p -o -type s", dirs.backing)).toBe("");
    expect(fs.lstatSync(path.join(dirs.backing, "src/f4")).mode & 0o7777).toBe(0o755);
    // The script's own evidence files carry real content.
    const read = (f: string) => fs.readFileSync(path.join(dirs.backing, f), "utf8");
    expect(read("git-status.txt")).toBe(" M f1\n");
    expect(read("git-log.txt")).toBe("init\n");
    expect(read("sock-ok")).toBe("ok\n");
    expect(read("fifo-read.txt")).toBe("through-fifo\n");
    expect(read("big-tail.txt")).toBe("tail");
    expect(read("big-size.txt")).toBe(`${5 * 1024 * 1024 * 1024 + 4}\n`);
    expect(read("m2")).toBe("one\nappended\n");
    expect(read("excl-status")).toBe("refused\n");
    expect(handle?.serverPid).not.toBe(process.pid);
    expect(fs.readFileSync(path.join(dirs.backing, "d2/x"), "utf8")).toBe("x\n");
    expect(fs.lstatSync(path.join(dirs.backing, "fifo1")).isFile()).toBe(true);
    expect(fs.lstatSync(path.join(dirs.backing, "sock1")).isFile()).toBe(true);
    expect(await shOk("stat -c '%F' fifo1 sock1", dirs.mnt)).toBe("fifo\nsocket\n");
    expect(raw.some((l) => l.includes("user.bin=0x00ff10"))).toBe(true);
    expect(raw.some((l) => l.startsWith("f 4755"))).toBe(true);
  });

  it("reports chown, chmod and xattr failures as errors, never as success", async () => {
    await shOk("echo x > victim", dirs.mnt);
    // An immutable host file refuses chown even to root: the guest must see EPERM.
    await shOk("chattr +i victim", dirs.backing);
    try {
      const r = await sh("chown 7:7 victim 2>&1; echo rc=$?; chmod 600 victim 2>&1; echo rc=$?", dirs.mnt);
      expect(r.stdout).toMatch(/chown: changing ownership of 'victim': Operation not permitted\nrc=1/);
      expect(r.stdout).toMatch(/chmod: changing permissions of 'victim': Operation not permitted\nrc=1/);
    } finally {
      await shOk("chattr -i victim", dirs.backing);
    }
    expect(fs.statSync(path.join(dirs.backing, "victim")).uid).toBe(0);
    const x = await sh("getfattr -n user.absent victim 2>&1; echo rc=$?; setfattr -n bogus.ns -v 1 victim 2>&1; echo rc=$?", dirs.mnt);
    expect(x.stdout).toMatch(/user\.absent: No such attribute\nrc=1/);
    expect(x.stdout).toMatch(/Operation not supported\nrc=1/);
  });

  it("mtime-only and atime-only updates (touch -m, touch -a, tar x) reach the host", async () => {
    if (!setattrShimPath()) {
      console.log("[@iii/filesystem] skipped: setattr shim not built (no C compiler); libfuse 2.9 drops these updates");
      return;
    }
    const out = await shOk(
      String.raw`echo x > t1; touch -m -d '2005-05-05 05:05:05' t1; touch -a -d '2006-06-06 06:06:06' t1; stat -c '%Y %X' t1
python3 -c 'import os; os.utime("t1", ns=(os.stat("t1").st_atime_ns, 1_300_000_000_123_000_000)); print(os.stat("t1").st_mtime_ns)'`,
      dirs.mnt,
    );
    expect(out).toBe("1115269505 1149573966\n1300000000123000000\n");
  });

  it("rename flags: libfuse 2 has no rename2, so flags give EINVAL (EEXIST from the VFS), mv -n still works", async () => {
    const script = String.raw`
echo src > rn-a; echo dst > rn-b
python3 - <<'PY'
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for src, dst, flags in ((b"rn-a", b"rn-new", 1), (b"rn-a", b"rn-b", 1), (b"rn-a", b"rn-b", 2)):
    ctypes.set_errno(0)
    r = libc.renameat2(-100, src, -100, dst, flags)
    print(r, errno.errorcode.get(ctypes.get_errno()))
PY
mv -n rn-a rn-b; cat rn-b; ls rn-a; mv rn-a rn-c; cat rn-c`;
    const out = await shOk(script, dirs.mnt);
    expect(out).toBe("-1 EINVAL\n-1 EEXIST\n-1 EINVAL\ndst\nrn-a\nsrc\n");
  });

  it("keeps device nodes as metadata only, and statfs", async () => {
    expect(await shOk("mknod cdev c 1 3 && stat -c '%F %t,%T' cdev", dirs.mnt)).toBe("character special file 1,3\n");
    const st = fs.lstatSync(path.join(dirs.backing, "cdev"));
    expect(st.isFile()).toBe(true);
    expect(st.size).toBe(0);
    expect(st.mode & 0o7777).toBe(0o600);
    const df = await shOk("stat -f -c '%b %S' .", dirs.mnt);
    const dfRaw = await shOk("stat -f -c '%b %S' .", dirs.backing);
    expect(df).toBe(dfRaw);
  });

  // Was "every name its own number": virtiofsd then could not find the inode of a second name it unlinks or
  // renames (EIO in guests). Names now share their file's number, and a removed name's node stays served
  // through a pin (pinned-files.ts), so the merged virtiofsd inode never loses its file.
  it("by default every name of a hard link shows one inode number, and a name outlives another", async () => {
    const base2 = tempDir("ino");
    const backing = path.join(base2, "backing");
    const mnt = path.join(base2, "mnt");
    fs.mkdirSync(backing);
    fs.mkdirSync(mnt);
    const h = await mountPassthrough({ root: backing, mountpoint: mnt });
    try {
      const out = await shOk("echo a > x && ln x y && stat -c %i x y && rm x && cat y", mnt);
      const [inoX, inoY, content] = out.trim().split("\n");
      expect(inoX).toBe(inoY);
      expect(content).toBe("a");
      // On the host the file lives on under its remaining name.
      expect(fs.readFileSync(path.join(backing, "y"), "utf8")).toBe("a\n");
    } finally {
      await h.unmount();
      rmrf(base2);
    }
  });
});
