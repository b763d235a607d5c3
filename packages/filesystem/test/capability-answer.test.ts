// The kernel asks `security.capability` before every write (file_remove_privs). The shim answers a node's
// repeat asks itself once the server said ENODATA (setattr-shim.c, seventh job): a write loop costs one
// getxattr request, not one per write. A capability set through any name (a hard link is another node) is
// seen at once through every name.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, setattrShimPath, type MountHandle } from "../src/index.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

describe.skipIf(!fuse.ok)("security.capability asks answered by the shim", () => {
  let base: string;
  let mnt: string;
  let h: MountHandle;

  beforeAll(async () => {
    expect(setattrShimPath()).not.toBeNull();
    base = tempDir("cap");
    mnt = path.join(base, "mnt");
    fs.mkdirSync(path.join(base, "root"));
    fs.mkdirSync(mnt);
    h = await mountPassthrough({ root: path.join(base, "root"), mountpoint: mnt });
  });
  afterAll(async () => {
    await h?.unmount();
    if (base) rmrf(base);
  });

  const getxattrs = async (): Promise<number> => {
    await new Promise((r) => setTimeout(r, 400)); // stats are a snapshot at most 250 ms old
    return h.stats().ops.getxattr ?? 0;
  };

  it("200 appends ask the server for security.capability at most a couple of times", async () => {
    await shOk("echo start > w", mnt);
    const before = await getxattrs();
    await shOk("for i in $(seq 1 200); do echo $i >> w; done", mnt);
    expect((await getxattrs()) - before).toBeLessThanOrEqual(2);
    expect(fs.readFileSync(path.join(base, "root", "w"), "utf8").split("\n").length).toBe(202);
  });

  it("files created through the mount cost no security.capability ask at all: 50 new files written", async () => {
    const before = await getxattrs();
    await shOk("mkdir many && for i in $(seq 1 50); do echo $i > many/f$i; echo more >> many/f$i; done", mnt);
    expect((await getxattrs()) - before).toBe(0);
  });

  it("a capability set through another name of the file is seen at once; removing it too", async () => {
    await shOk("echo x > c1 && ln c1 c2 && for i in 1 2 3; do echo $i >> c1; done", mnt);
    expect(await shOk("getcap c1; echo none", mnt)).toBe("none\n");
    await shOk("setcap cap_net_raw+ep c2", mnt);
    expect(await shOk("getcap c1", mnt)).toMatch(/c1 cap_net_raw=ep/);
    await shOk("setcap -r c2", mnt);
    expect(await shOk("getcap c1; echo none", mnt)).toBe("none\n");
  });
});
