// Two copy-on-write mounts over one lower: each sees exactly what a plain copy of
// the lower would show after the same changes; the lower never changes; each upper
// holds only its own changes.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, shOk, snapshot, tempDir } from "./helpers.js";

const LOWER_SETUP = String.raw`
set -e
mkdir -p etc usr/lib/pkg usr/bin var/empty home/u/.cache
echo conf > etc/app.conf
echo passwd > etc/passwd
for i in $(seq 1 30); do echo "lib $i" > usr/lib/pkg/m$i.so; done
printf '#!/bin/sh\necho tool\n' > usr/bin/tool; chmod 755 usr/bin/tool
ln -s ../lib/pkg/m1.so usr/bin/link-to-lib
ln etc/passwd etc/passwd-hardlink
mkfifo var/fifo
setfattr -n user.label -v lower etc/app.conf
chown 5:6 etc/passwd
chmod 600 etc/passwd
echo cached > home/u/.cache/c
find . -exec touch -h -d '2001-02-03 04:05:06.500' {} +
`;

const CHANGES_A = String.raw`
set -e
echo appended >> etc/app.conf
setfattr -n user.extra -v a etc/app.conf
chown 7:8 usr/bin/tool
chmod 700 usr/lib/pkg/m2.so
rm usr/lib/pkg/m3.so
rm -rf home/u/.cache
mkdir home/u/.cache
echo fresh > home/u/.cache/new
mv usr/lib/pkg usr/lib/pkg2
echo new-in-moved > usr/lib/pkg2/added
mv etc/passwd etc/passwd.old
ln etc/app.conf etc/app.conf.link
ln -s /etc/passwd.old abs-link
mkfifo var/fifo2
touch -h -d '2010-01-01 00:00:00' usr/bin/link-to-lib
rmdir var/empty
mkdir var/empty
mv var/empty newtop
`;

const CHANGES_B = String.raw`
set -e
rm -rf usr
echo b > etc/app.conf
mkdir -p usr/lib
echo only-b > usr/lib/b
mv etc etc2
mv etc2/passwd-hardlink etc2/hl
truncate -s 3 etc2/app.conf
setfattr -x user.label etc2/app.conf
`;

describe.skipIf(!fuse.ok)("copy-on-write layers", () => {
  let base: string;
  const handles: MountHandle[] = [];
  const d = (n: string) => path.join(base, n);

  beforeAll(async () => {
    base = tempDir("layers");
    for (const n of ["lower", "upA", "upB", "mA", "mB"]) fs.mkdirSync(d(n));
    await shOk(LOWER_SETUP, d("lower"));
    // The expected views: plain copies of the lower with the same changes applied.
    await shOk(`cp -a lower plainA && cp -a lower plainB`, base);
    handles.push(await mountPassthrough({ layers: { lower: d("lower"), upper: d("upA") }, mountpoint: d("mA") }));
    handles.push(await mountPassthrough({ layers: { lower: d("lower"), upper: d("upB") }, mountpoint: d("mB") }));
  });

  afterAll(async () => {
    for (const h of handles) await h.unmount().catch(() => undefined);
    if (base) rmrf(base);
  });

  it("each view matches a plain copy after the same changes; the lower is unchanged", async () => {
    const lowerBefore = await snapshot(d("lower"));
    const ctimes = await shOk("find . -printf '%p %C@ %i\\n' | sort", d("lower"));
    // Reads first fall through to the lower.
    expect(await shOk("cat etc/app.conf; ./usr/bin/tool; cat usr/bin/link-to-lib", d("mA"))).toBe("conf\ntool\nlib 1\n");
    await shOk(CHANGES_A, d("plainA"));
    await shOk(CHANGES_A, d("mA"));
    await shOk(CHANGES_B, d("plainB"));
    await shOk(CHANGES_B, d("mB"));
    expect(await snapshot(d("mA"))).toEqual(await snapshot(d("plainA")));
    expect(await snapshot(d("mB"))).toEqual(await snapshot(d("plainB")));
    expect(await snapshot(d("lower"))).toEqual(lowerBefore);
    expect(await shOk("find . -printf '%p %C@ %i\\n' | sort", d("lower"))).toBe(ctimes);
  });

  it("copy-up keeps owner, mode, times and xattrs", async () => {
    const st = fs.lstatSync(path.join(base, "upA/usr/bin/tool"));
    // The guest's owner is metadata (the override xattr); the upper file belongs to the upper's owner.
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([0, 0, 0o755]);
    expect(await shOk("stat -c '%u:%g %a' usr/bin/tool", d("mA"))).toBe("7:8 755\n");
    expect(st.mtime.toISOString()).toBe("2001-02-03T04:05:06.500Z");
    expect(await shOk("getfattr -n user.label --only-values usr/bin/../../etc/app.conf 2>/dev/null || getfattr -n user.label --only-values etc/app.conf", d("upA"))).toBe("lower");
  });

  it("each upper holds only its own changes", async () => {
    const list = async (n: string) => (await shOk("find . -mindepth 1 | LC_ALL=C sort", d(n))).split("\n").filter(Boolean);
    const upA = await list("upA");
    const upB = await list("upB");
    // Untouched lower files were never copied up.
    expect(upA).not.toContain("./usr/lib/pkg2/m10.so".replace("pkg2", "pkg"));
    expect(upA).not.toContain("./etc/passwd-hardlink");
    expect(upB).not.toContain("./usr/lib/pkg2");
    expect(upB).not.toContain("./home");
    expect(upA).not.toContain("./etc2");
    expect(upA.some((p) => p.includes("only-b") || p.endsWith("/b"))).toBe(false);
    expect(upB.some((p) => p.includes("pkg2") || p.includes("fifo2"))).toBe(false);
    // Deletions are whiteouts, never removals from the lower.
    expect(upA).toContain("./usr/lib/.wh.pkg");
    // usr was deleted, then recreated: an opaque directory hides the old lower content.
    expect(upB).toContain("./usr/.wh..wh..opq");
    expect(upB).toContain("./.wh.etc");
    expect(fs.existsSync(d("lower/usr/lib/pkg/m3.so"))).toBe(true);
    // Reserved names are refused in a layered view.
    const r = await shOk("touch .wh.x 2>&1; echo rc=$?", d("mA"));
    expect(r).toMatch(/Operation not permitted\nrc=1/);
  });
});
