// The attack: a guest with a writable share plants a setuid-root shell, a device node,
// a FIFO or a file capability in it, and an unprivileged host user uses them from the
// host directory. Through the mount the guest must see exactly what it made; on the
// host directory nothing it made may be privileged.
//
// Each case runs through a `root` (passthrough) mount and a `layers` mount (copy-on-
// write, HOSTDIR = the upper). The "guest" is a root shell working in the mountpoint
// (as virtiofsd does for a guest root); the host attacker is uid/gid 65534 with no groups.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, shOk, tempDir } from "./helpers.js";

const NOBODY = "setpriv --reuid 65534 --regid 65534 --clear-groups";
const OWNER = { uid: 4242, gid: 4343 };

const kinds = ["root", "layers"] as const;

const quote = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

describe.skipIf(!fuse.ok)("host privilege: nothing a guest writes is privileged on the host", () => {
  let base: string;
  const handles: MountHandle[] = [];

  beforeAll(() => {
    base = tempDir("hostpriv");
    // The host attacker must be able to reach the host directories and the mountpoints.
    fs.chmodSync(base, 0o755);
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  it("nosuid,nodev also without auto_unmount (mounted by libfuse itself, not by fusermount, which forces them)", async () => {
    const dir = path.join(base, "no-auto");
    fs.mkdirSync(path.join(dir, "share"), { recursive: true });
    fs.mkdirSync(path.join(dir, "mnt"));
    const h = await mountPassthrough({ root: path.join(dir, "share"), mountpoint: path.join(dir, "mnt"), autoUnmount: false });
    try {
      const line = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === path.join(dir, "mnt"));
      const opts = line?.split(" ")[5]?.split(",") ?? [];
      expect(opts).toContain("nosuid");
      expect(opts).toContain("nodev");
    } finally {
      await h.unmount();
    }
  });

  describe.each(kinds)("%s mount", (kind) => {
    let hostDir: string;
    let mnt: string;
    let lower: string;

    beforeAll(async () => {
      const dir = path.join(base, kind);
      mnt = path.join(dir, "mnt");
      fs.mkdirSync(mnt, { recursive: true });
      if (kind === "root") {
        // Explicit hostOwner.
        hostDir = path.join(dir, "share");
        fs.mkdirSync(hostDir);
        handles.push(await mountPassthrough({ root: hostDir, mountpoint: mnt, allowOther: true, hostOwner: OWNER }));
      } else {
        // Default host owner: the owner of the upper directory.
        lower = path.join(dir, "lower");
        hostDir = path.join(dir, "upper");
        fs.mkdirSync(path.join(lower, "bin"), { recursive: true });
        fs.mkdirSync(hostDir);
        fs.chownSync(hostDir, OWNER.uid, OWNER.gid);
        fs.copyFileSync("/bin/sh", path.join(lower, "bin/tool"));
        fs.chmodSync(path.join(lower, "bin/tool"), 0o755);
        // An image unpacked with setuid kept (lower layers are private to the host).
        fs.copyFileSync("/bin/sh", path.join(lower, "bin/imgsuid"));
        fs.chmodSync(path.join(lower, "bin/imgsuid"), 0o4755);
        handles.push(await mountPassthrough({ layers: { lower, upper: hostDir }, mountpoint: mnt, allowOther: true }));
      }
      fs.chmodSync(hostDir, 0o755);
    });

    const guest = (script: string) => shOk(script, mnt);
    const hostAsNobody = (script: string) => sh(`${NOBODY} bash -c ${quote(script)}`, hostDir);

    it("mount is nosuid,nodev", () => {
      const line = fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === mnt);
      expect(line).toBeDefined();
      const opts = (line as string).split(" ")[5]?.split(",") ?? [];
      expect(opts).toContain("nosuid");
      expect(opts).toContain("nodev");
    });

    it("setuid/setgid copies of sh: exact in the guest, plain on the host, no euid=0 for the host user", async () => {
      await guest(`set -e
cp /bin/sh suidsh; chmod 4755 suidsh
cp /bin/sh sgidsh; chmod 2755 sgidsh
cp /bin/sh rootsh; chown 0:0 rootsh; chmod 6755 rootsh
mkdir sticky; chmod 1777 sticky`);
      expect(await guest("stat -c '%A %u:%g %n' suidsh sgidsh rootsh sticky")).toBe(
        "-rwsr-xr-x 0:0 suidsh\n-rwxr-sr-x 0:0 sgidsh\n-rwsr-sr-x 0:0 rootsh\ndrwxrwxrwt 0:0 sticky\n",
      );
      const perm = await hostAsNobody("find . -perm /6000");
      expect(perm.stdout).toBe("");
      expect(perm.code).toBe(0);
      for (const f of ["suidsh", "sgidsh", "rootsh"]) {
        const r = await hostAsNobody(`./${f} -p -c id`);
        expect(r.stdout).toMatch(/^uid=65534/);
        expect(r.stdout).not.toMatch(/euid=0|egid=0/);
      }
      // Even through the mountpoint itself (nosuid).
      const viaMnt = await sh(`${NOBODY} ${mnt}/rootsh -p -c id`, "/");
      expect(viaMnt.stdout).toMatch(/^uid=65534/);
      expect(viaMnt.stdout).not.toMatch(/euid=0|egid=0/);
    });

    it("device nodes, FIFOs and sockets: exact in the guest, empty regular files on the host", async () => {
      await guest(`set -e
mknod rnd c 1 8; chmod 666 rnd
mknod disk b 8 0
mkfifo fifo
python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("sock")'`);
      expect(await guest("stat -c '%A %t,%T %u:%g %n' rnd disk fifo; stat -c '%F %n' sock")).toBe(
        "crw-rw-rw- 1,8 0:0 rnd\nbrw-r--r-- 8,0 0:0 disk\nprw-r--r-- 0,0 0:0 fifo\nsocket sock\n",
      );
      // readdir types too (find uses d_type).
      expect(await guest("find . -maxdepth 1 \\( -type c -o -type b -o -type p -o -type s \\) | LC_ALL=C sort")).toBe(
        "./disk\n./fifo\n./rnd\n./sock\n",
      );
      const special = await hostAsNobody("find . \\( -type c -o -type b -o -type p -o -type s \\)");
      expect(special.stdout).toBe("");
      expect(special.code).toBe(0);
      const read = await hostAsNobody("head -c 16 rnd | wc -c");
      expect(read.stdout.trim()).toBe("0");
      const st = fs.lstatSync(path.join(hostDir, "rnd"));
      expect([st.isFile(), st.size, st.mode & 0o7777]).toEqual([true, 0, 0o600]);
      // The host side of the mount does not open devices either (nodev).
      expect((await sh(`head -c 1 ${mnt}/rnd`, "/")).stderr).toMatch(/Permission denied/);
    });

    it("file capabilities: getcap works in the guest, no security.capability on the host", async () => {
      await guest("cp /bin/sh capsh && setcap cap_setuid,cap_net_raw+ep capsh");
      expect(await guest("getcap capsh")).toMatch(/^capsh cap_setuid,cap_net_raw=ep\n$/);
      expect(await guest("getfattr -n security.capability --only-values capsh | wc -c")).not.toBe("0\n");
      // As root on the host: every namespace, every file.
      const all = await shOk("getfattr -R -h -d -m - . 2>/dev/null", hostDir);
      expect(all).toMatch(/^user\.iii\.x\.security\.capability=/m);
      expect(all).not.toMatch(/^security\./m);
      expect(await shOk("getcap -r . 2>/dev/null || true", hostDir)).toBe("");
      // The shell reads its own status (a child would not inherit file capabilities).
      const caps = await hostAsNobody("./capsh -c 'while read -r l; do case $l in CapEff*) echo $l;; esac; done < /proc/self/status'");
      expect(caps.stdout).toMatch(/CapEff:\s+0000000000000000/);
    });

    it("the guest can neither read, set, remove nor forge the reserved user.iii.* names", async () => {
      await guest("cp /bin/sh forge && chmod 4755 forge && setfattr -n user.mine -v 1 forge");
      const names = await guest("getfattr -d -m - forge");
      expect(names).toMatch(/user\.mine/);
      expect(names).not.toMatch(/iii/);
      const tries = await sh(
        `getfattr -n user.iii.override forge 2>&1; echo rc=$?
setfattr -n user.iii.override -v 0x01000000ed8d0000000000000000000000000000 forge 2>&1; echo rc=$?
setfattr -x user.iii.override forge 2>&1; echo rc=$?
setfattr -n user.iii.x.security.capability -v 0x01 forge 2>&1; echo rc=$?`,
        mnt,
      );
      expect(tries.stdout).toMatch(/No such attribute\nrc=1\n.*Operation not permitted\nrc=1\n.*Operation not permitted\nrc=1\n.*Operation not permitted\nrc=1\n/s);
      // A guest trusted.* name that looks like ours is stored mapped: it changes nothing.
      await guest("cp /bin/true plain && setfattr -n trusted.iii.override -v 0x01000000ed89000000000000000000000000000000000000 plain");
      expect(await guest("stat -c '%A %u:%g' forge plain")).toBe("-rwsr-xr-x 0:0\n-rwxr-xr-x 0:0\n");
      expect(await guest("getfattr -n trusted.iii.override -e hex plain | grep -c 0x01000000ed89")).toBe("1\n");
      expect((await hostAsNobody("find . -perm /6000")).stdout).toBe("");
      // virtiofsd sends a guest trusted.* in its stored form (user.iii.x.trusted.*): that one name family is
      // accepted as the trusted.* it stands for, and reaches nothing else of ours.
      await guest("setfattr -n user.iii.x.trusted.viafsd -v 7 plain");
      expect(await guest("getfattr --only-values -n trusted.viafsd plain")).toBe("7");
      expect(await guest("getfattr --only-values -n user.iii.x.trusted.viafsd plain")).toBe("7");
      const aliasTries = await sh(
        `setfattr -n user.iii.x.trusted. -v 1 plain 2>&1; echo rc=$?
setfattr -n user.iii.x.security.capability -v 0x01 plain 2>&1; echo rc=$?
setfattr -n user.iii.x.trustedX -v 1 plain 2>&1; echo rc=$?`,
        mnt,
      );
      expect(aliasTries.stdout).toMatch(/Operation not permitted\nrc=1\n.*Operation not permitted\nrc=1\n.*Operation not permitted\nrc=1\n/s);
      expect(await guest("stat -c '%A %u:%g' plain")).toBe("-rwxr-xr-x 0:0\n");
    });

    it("POSIX ACLs are guest metadata too", async () => {
      // u::rw-, u:1234:r--, g::r--, m::r--, o::---
      const acl = "0x02000000010006000000000002000400d2040000040004000000000010000400000000002000000000000000";
      await guest(`echo secret > acl-file && chmod 640 acl-file && setfattr -n system.posix_acl_access -v ${acl} acl-file`);
      expect(await guest("getfattr -n system.posix_acl_access -e hex acl-file | grep -c 0x0200")).toBe("1\n");
      const host = await shOk("getfattr -d -m - -h acl-file 2>/dev/null", hostDir);
      expect(host).toMatch(/^user\.iii\.x\.system\.posix_acl_access=/m);
      expect(host).not.toMatch(/^system\./m);
      // Host uid 1234 gets nothing from the guest's ACL entry for its uid 1234.
      expect((await sh("setpriv --reuid 1234 --regid 1234 --clear-groups cat acl-file", hostDir)).stderr).toMatch(/Permission denied/);
    });

    it(`entries the guest creates are owned on the host by ${kind === "root" ? "hostOwner" : "the upper's owner"}; guest owners stay in the guest`, async () => {
      await guest("mkdir -p owned && chmod 777 owned");
      await shOk(`setpriv --reuid 1234 --regid 1234 --clear-groups bash -c 'cd owned && touch f && mkdir d && ln -s f l && mkfifo p'`, mnt);
      await guest("touch owned/byroot && chown 0:0 owned/byroot && mkdir gdir && chown 0:77 gdir && chmod 2775 gdir && setpriv --reuid 1234 --regid 1234 --clear-groups touch gdir/inherits");
      expect(await guest("stat -c '%u:%g %n' owned/f owned/d owned/l owned/p owned/byroot gdir/inherits")).toBe(
        "1234:1234 owned/f\n1234:1234 owned/d\n1234:1234 owned/l\n1234:1234 owned/p\n0:0 owned/byroot\n1234:77 gdir/inherits\n",
      );
      const notOwned = await shOk(`find . -mindepth 1 \\( ! -user ${OWNER.uid} -o ! -group ${OWNER.gid} \\) -printf '%u:%g %p\\n'`, hostDir);
      expect(notOwned).toBe("");
    });

    it.runIf(kind === "layers")("copy-up of an image file made setuid by the guest stays plain on the host; image setuid shows as it is", async () => {
      await guest("chmod 4755 bin/tool && chmod g+w bin/imgsuid");
      expect(await guest("stat -c '%A %n' bin/tool bin/imgsuid")).toBe("-rwsr-xr-x bin/tool\n-rwsrwxr-x bin/imgsuid\n");
      expect(fs.lstatSync(path.join(hostDir, "bin/tool")).mode & 0o7777).toBe(0o755);
      expect(fs.lstatSync(path.join(hostDir, "bin/imgsuid")).mode & 0o7777).toBe(0o775);
      expect((await hostAsNobody("find . -perm /6000")).stdout).toBe("");
      const r = await hostAsNobody("./bin/tool -p -c id");
      expect(r.stdout).not.toMatch(/euid=0/);
      // The lower is untouched.
      expect(fs.lstatSync(path.join(lower, "bin/tool")).mode & 0o7777).toBe(0o755);
    });
  });
});
