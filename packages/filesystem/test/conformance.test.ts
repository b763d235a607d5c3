// POSIX conformance of the mount, class by class (issue 15), written from POSIX and the Linux man pages
// (open(2), chmod(2), chown(2), utimensat(2), unlink(2), rename(2), mknod(2), link(2), xattr(7), fallocate(2)).
// Mounted as `iii-fs mount --allow-other` mounts (allowOther + defaultPermissions), through the `root` and
// `layers` trees; each check runs as root and as other uids (setpriv), and asserts the errno or the result a
// real file system gives. The same script runs in a guest's root file system in the worker's VM tests.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, tempDir } from "./helpers.js";

const kinds = ["root", "layers"] as const;
const U1 = 1234;
const U2 = 1235;

/** `python3 -c` one-liners: `t(label, fn)` prints `label ok`/`label <ERRNO>`. */
const PY_PRELUDE = `
import errno, os, socket, stat, sys
def t(label, fn):
    try:
        r = fn(); print(label, "ok" if r is None else r)
    except OSError as e:
        print(label, errno.errorcode.get(e.errno, e.errno))
`;

describe.skipIf(!fuse.ok)("POSIX conformance through the mount (root and other uids)", () => {
  let base: string;
  const handles: MountHandle[] = [];

  beforeAll(() => {
    base = tempDir("conf");
    fs.chmodSync(base, 0o755);
    fs.writeFileSync(path.join(base, "prelude.py"), PY_PRELUDE);
  });
  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  describe.each(kinds)("%s mount", (kind) => {
    let mnt: string;
    let hostDir: string;

    beforeAll(async () => {
      const dir = path.join(base, kind);
      mnt = path.join(dir, "mnt");
      fs.mkdirSync(mnt, { recursive: true });
      hostDir = path.join(dir, kind === "root" ? "root" : "upper");
      fs.mkdirSync(hostDir, { mode: 0o755 });
      const opts = { mountpoint: mnt, allowOther: true, defaultPermissions: true };
      if (kind === "root") handles.push(await mountPassthrough({ root: hostDir, ...opts }));
      else {
        fs.mkdirSync(path.join(dir, "lower"), { mode: 0o755 });
        handles.push(await mountPassthrough({ layers: { lower: path.join(dir, "lower"), upper: hostDir }, ...opts }));
      }
      // Everyone may create at the top, as in /tmp (without the sticky bit).
      await py(0, `os.chmod(".", 0o777)`);
    });

    /** Runs a python script (after the prelude) in the mount as `uid` (0: root). */
    async function py(uid: number, script: string): Promise<string[]> {
      const file = path.join(base, `s-${kind}-${Math.random().toString(36).slice(2)}.py`);
      fs.writeFileSync(file, `exec(open(${JSON.stringify(path.join(base, "prelude.py"))}).read())\n${script}`);
      fs.chmodSync(file, 0o644);
      const as = uid === 0 ? "" : `setpriv --reuid ${uid} --regid ${uid} --clear-groups `;
      const r = await sh(`${as}/usr/bin/python3 ${file}`, mnt);
      expect(r.stderr).toBe("");
      return r.stdout.split("\n").filter(Boolean);
    }

    it("permissions: other uids get what the mode and owner allow, root gets everything", async () => {
      await py(0, `
os.mkdir("p"); os.chmod("p", 0o755)
open("p/ro", "w").write("root"); os.chmod("p/ro", 0o644)
open("p/rw", "w").write("shared"); os.chmod("p/rw", 0o666)
os.mkdir("p/t"); os.chmod("p/t", 0o1777)
open("p/t/rootfile", "w").write("r")
os.mkdir("p/u"); os.chown("p/u", ${U1}, ${U1})
`);
      const out = await py(U1, `
t("write-open 0644 of root", lambda: os.close(os.open("p/ro", os.O_WRONLY)))
t("read 0644 of root", lambda: open("p/ro").read())
t("create in root 0755 dir", lambda: os.close(os.open("p/new", os.O_CREAT | os.O_WRONLY, 0o644)))
t("chmod root's file", lambda: os.chmod("p/ro", 0o666))
t("chown root's file", lambda: os.chown("p/ro", ${U1}, ${U1}))
t("explicit times on root's 0666 file", lambda: os.utime("p/rw", (1, 1)))
t("now-times on root's 0666 file", lambda: os.utime("p/rw", None))
t("access W_OK 0644", lambda: os.access("p/ro", os.W_OK))
t("unlink in root 0755 dir", lambda: os.unlink("p/rw"))
t("unlink root's file in sticky dir", lambda: os.unlink("p/t/rootfile"))
t("rename root's file in sticky dir", lambda: os.rename("p/t/rootfile", "p/t/x"))
t("own file in sticky dir", lambda: (open("p/t/mine", "w").write("m"), os.stat("p/t/mine").st_uid)[1])
t("give own file away", lambda: os.chown("p/t/mine", ${U2}, -1))
t("own file to a group it is not in", lambda: os.chown("p/t/mine", -1, ${U2}))
t("chmod own file", lambda: os.chmod("p/t/mine", 0o600))
t("mkdir in own dir", lambda: (os.mkdir("p/u/d"), oct(stat.S_IMODE(os.stat("p/u/d").st_mode)))[1])
`);
      expect(out).toEqual([
        "write-open 0644 of root EACCES",
        "read 0644 of root root",
        "create in root 0755 dir EACCES",
        "chmod root's file EPERM",
        "chown root's file EPERM",
        "explicit times on root's 0666 file EPERM",
        "now-times on root's 0666 file ok",
        "access W_OK 0644 False",
        "unlink in root 0755 dir EACCES",
        "unlink root's file in sticky dir EPERM",
        "rename root's file in sticky dir EPERM",
        `own file in sticky dir ${U1}`,
        "give own file away EPERM",
        "own file to a group it is not in EPERM",
        "chmod own file ok",
        "mkdir in own dir 0o755",
      ]);
      const other = await py(U2, `
t("unlink another user's file in sticky dir", lambda: os.unlink("p/t/mine"))
t("read another user's 0600 file", lambda: open("p/t/mine").read())
`);
      expect(other).toEqual(["unlink another user's file in sticky dir EPERM", "read another user's 0600 file EACCES"]);
      const root = await py(0, `
t("root reads 0600 of another", lambda: open("p/t/mine").read())
t("root unlinks in sticky dir", lambda: os.unlink("p/t/mine"))
t("root chowns", lambda: (os.chown("p/ro", ${U2}, ${U2}), os.stat("p/ro").st_uid)[1])
`);
      expect(root).toEqual(["root reads 0600 of another m", "root unlinks in sticky dir ok", `root chowns ${U2}`]);
      // The host keeps its own owner; the guest's owners are metadata.
      expect(fs.statSync(path.join(hostDir, "p", "ro")).uid).toBe(0);
    });

    it("setgid directories: new entries take the directory's group, new subdirectories the bit", async () => {
      await py(0, `os.mkdir("g"); os.chown("g", 0, 77); os.chmod("g", 0o2777)`);
      const out = await py(U1, `
open("g/f", "w").write("x"); s = os.stat("g/f"); print("file", s.st_uid, s.st_gid)
os.mkdir("g/d"); s = os.stat("g/d"); print("dir", s.st_gid, oct(stat.S_IMODE(s.st_mode) & 0o2000))
`);
      expect(out).toEqual([`file ${U1} 77`, "dir 77 0o2000"]);
    });

    it("setuid/setgid are cleared on write by a non-owner, on the owner's write, and on chown", async () => {
      await py(0, `
os.mkdir("s"); os.chmod("s", 0o777)
for n in ("w", "own", "ch"):
    open("s/" + n, "w").write("#!/bin/sh\\n")
os.chmod("s/w", 0o6777)
os.chown("s/own", ${U1}, ${U1}); os.chmod("s/own", 0o6775)
os.chmod("s/ch", 0o4755)
`);
      await py(U2, `open("s/w", "a").write("echo\\n")`);
      await py(U1, `open("s/own", "a").write("echo\\n")`);
      const out = await py(0, `
os.chown("s/ch", ${U1}, -1)
for n in ("w", "own", "ch"):
    print(n, oct(stat.S_IMODE(os.stat("s/" + n).st_mode)))
`);
      expect(out).toEqual(["w 0o777", "own 0o775", "ch 0o755"]);
    });

    it("device nodes, FIFOs and sockets: root makes them with type and numbers; other uids get EPERM for devices only", async () => {
      const out = await py(0, `
os.mkdir("n"); os.chmod("n", 0o777)
t("mknod b", lambda: os.mknod("n/blk", 0o660 | stat.S_IFBLK, os.makedev(8, 3)))
t("mknod c", lambda: os.mknod("n/chr", 0o666 | stat.S_IFCHR, os.makedev(1, 8)))
t("mkfifo", lambda: os.mkfifo("n/fifo", 0o644))
s = socket.socket(socket.AF_UNIX); s.bind("n/sock")
for n in ("blk", "chr", "fifo", "sock"):
    st = os.lstat("n/" + n)
    print(n, stat.filemode(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev))
t("open a device node on a nodev mount", lambda: os.close(os.open("n/chr", os.O_RDONLY)))
`);
      expect(out).toEqual([
        "mknod b ok",
        "mknod c ok",
        "mkfifo ok",
        "blk brw-r----- 8 3", // the umask (022) applies, as to every mknod
        "chr crw-r--r-- 1 8",
        "fifo prw-r--r-- 0 0",
        "sock srwxr-xr-x 0 0",
        "open a device node on a nodev mount EACCES",
      ]);
      const user = await py(U1, `
t("mknod c as a user", lambda: os.mknod("n/u-chr", 0o666 | stat.S_IFCHR, os.makedev(1, 3)))
t("mkfifo as a user", lambda: (os.mkfifo("n/u-fifo"), stat.filemode(os.stat("n/u-fifo").st_mode), os.stat("n/u-fifo").st_uid))
`);
      expect(user).toEqual(["mknod c as a user EPERM", `mkfifo as a user (None, 'prw-r--r--', ${U1})`]);
      // A FIFO works as one: a writer and a reader meet.
      const fifo = await sh("(echo through > n/fifo &) ; cat n/fifo", mnt);
      expect(fifo.stdout).toBe("through\n");
      // On the host: never a device node, FIFO or socket.
      for (const n of ["blk", "chr", "fifo", "sock", "u-fifo"]) expect(fs.lstatSync(path.join(hostDir, "n", n)).isFile()).toBe(true);
    });

    it("hard links: counts on every name, one inode number, a name outlives another, no links to directories", async () => {
      const out = await py(U1, `
os.mkdir("h")
open("h/a", "w").write("data")
os.link("h/a", "h/b"); os.link("h/b", "h/c")
print("counts", [os.stat("h/" + n).st_nlink for n in "abc"])
print("one ino", len({os.stat("h/" + n).st_ino for n in "abc"}))
os.unlink("h/a"); print("after rm", open("h/b").read(), [os.stat("h/" + n).st_nlink for n in "bc"])
open("h/x", "w").write("other"); os.rename("h/x", "h/b"); print("after mv over", os.stat("h/c").st_nlink, open("h/b").read())
t("link a directory", lambda: os.link("h", "h2"))
t("link onto an existing name", lambda: os.link("h/c", "h/b"))
`);
      expect(out).toEqual([
        "counts [3, 3, 3]",
        "one ino 1",
        "after rm data [2, 2]",
        "after mv over 1 other",
        "link a directory EPERM",
        "link onto an existing name EEXIST",
      ]);
      // protected_hardlinks (on here): a user cannot link a file it neither owns nor may write.
      await py(0, `open("h/rootonly", "w").write("r"); os.chmod("h/rootonly", 0o644)`);
      const prot = fs.readFileSync("/proc/sys/fs/protected_hardlinks", "utf8").trim();
      const linked = await py(U1, `t("link root's 0644 file", lambda: os.link("h/rootonly", "h/mine"))`);
      expect(linked).toEqual([prot === "1" ? "link root's 0644 file EPERM" : "link root's 0644 file ok"]);
    });

    it("xattrs: user.* for who may write, flags, sizes; trusted.* for root only", async () => {
      const out = await py(U1, `
open("xa", "w").write("x")
t("set", lambda: os.setxattr("xa", "user.k", b"v1"))
t("get", lambda: os.getxattr("xa", "user.k"))
t("create existing", lambda: os.setxattr("xa", "user.k", b"v2", os.XATTR_CREATE))
t("replace missing", lambda: os.setxattr("xa", "user.none", b"v", os.XATTR_REPLACE))
t("replace", lambda: (os.setxattr("xa", "user.k", b"v3", os.XATTR_REPLACE), os.getxattr("xa", "user.k"))[1])
t("big value", lambda: (os.setxattr("xa", "user.big", b"z" * 3000), len(os.getxattr("xa", "user.big")))[1])
t("list", lambda: sorted(os.listxattr("xa")))
t("remove", lambda: os.removexattr("xa", "user.big"))
t("get removed", lambda: os.getxattr("xa", "user.big"))
t("trusted as a user", lambda: os.setxattr("xa", "trusted.t", b"v"))
t("our reserved name", lambda: os.setxattr("xa", "user.iii.override", b"x" * 24))
t("unknown namespace", lambda: os.setxattr("xa", "foo.bar", b"v"))
`);
      expect(out).toEqual([
        "set ok",
        "get b'v1'",
        "create existing EEXIST",
        "replace missing ENODATA",
        "replace b'v3'",
        "big value 3000",
        "list ['user.big', 'user.k']",
        "remove ok",
        "get removed ENODATA",
        "trusted as a user EPERM",
        "our reserved name EPERM",
        "unknown namespace ENOTSUP",
      ]);
      const other = await py(U2, `t("user.* on a file it may not write", lambda: os.setxattr("xa", "user.o", b"v"))`);
      expect(other).toEqual(["user.* on a file it may not write EACCES"]);
      const root = await py(0, `
t("trusted as root", lambda: (os.setxattr("xa", "trusted.t", b"tv"), os.getxattr("xa", "trusted.t"))[1])
t("ERANGE", lambda: __import__("ctypes").CDLL(None, use_errno=True).getxattr(b"xa", b"user.k", __import__("ctypes").create_string_buffer(1), 1) == -1 and __import__("ctypes").get_errno())
`);
      expect(root).toEqual(["trusted as root b'tv'", `ERANGE ${34}`]);
    });

    it("fallocate: sizes, KEEP_SIZE, punching holes; refused on a file opened read-only", async () => {
      const out = await py(U1, `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def falloc(path, mode, off, length, flags=os.O_RDWR):
    fd = os.open(path, flags | os.O_CREAT, 0o644)
    try:
        if libc.fallocate(fd, mode, ctypes.c_long(off), ctypes.c_long(length)) != 0:
            raise OSError(ctypes.get_errno(), "fallocate")
        return os.fstat(fd).st_size
    finally:
        os.close(fd)
t("allocate 1M", lambda: falloc("fa", 0, 0, 1 << 20))
t("keep size", lambda: falloc("fa", 1, 0, 2 << 20))
t("punch hole", lambda: falloc("fa", 1 | 2, 0, 65536))
t("read-only fd", lambda: falloc("fa", 0, 0, 4 << 20, os.O_RDONLY))
`);
      expect(out).toEqual(["allocate 1M 1048576", "keep size 1048576", "punch hole 1048576", "read-only fd EBADF"]);
    });
  });
});
