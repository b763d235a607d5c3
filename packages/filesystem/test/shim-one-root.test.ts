// The shim's fast paths hold one root fd per process. A second mount in the same process (a library user
// mounting twice in-process with the shim preloaded) must not re-point the first mount's C answers at the second
// mount's root: the first mount would list, read and create in a tree that is not its own.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { setattrShimPath } from "../src/index.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

const shim = setattrShimPath();
const skip = !fuse.ok ? "FUSE is not usable here" : shim === null ? "the shim was not built (dist/libiii-setattr-shim.so)" : undefined;
if (skip) console.warn(`[shim-one-root] skipping: ${skip}`);

describe.skipIf(!!skip)("two in-process mounts with the shim preloaded", () => {
  const children: ChildProcess[] = [];
  const bases: string[] = [];
  afterAll(() => {
    for (const c of children) c.kill("SIGKILL");
    // Synchronously: a timer left for later never fired before the test process exited (the dir stayed in /tmp).
    for (const b of bases) {
      for (const m of ["mntA", "mntB"]) spawnSync("fusermount", ["-uz", path.join(b, m)], { stdio: "ignore" });
      rmrf(b);
    }
  });

  it("each mount lists, reads and creates in its own root only", async () => {
    const base = tempDir("one-root");
    bases.push(base);
    for (const d of ["rootA", "rootB", "mntA", "mntB"]) fs.mkdirSync(path.join(base, d));
    fs.writeFileSync(path.join(base, "rootA", "afile"), "A\n");
    fs.writeFileSync(path.join(base, "rootB", "bfile"), "B-secret\n");
    const index = fileURLToPath(new URL("../dist/index.js", import.meta.url));
    const owner = path.join(base, "owner.mjs");
    fs.writeFileSync(
      owner,
      `import { mountPassthrough } from ${JSON.stringify(index)};
const at = (d) => ${JSON.stringify(base)} + "/" + d;
const a = await mountPassthrough({ root: at("rootA"), mountpoint: at("mntA"), isolation: "in-process" });
const b = await mountPassthrough({ root: at("rootB"), mountpoint: at("mntB"), isolation: "in-process" });
process.stdin.on("data", async () => { await b.unmount(); await a.unmount(); process.exit(0); });
console.log("mounted");
`,
    );
    const child = spawn(process.execPath, [owner], { cwd: "/", stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, LD_PRELOAD: shim! } });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on("data", (d: Buffer) => d.toString().includes("mounted") && resolve());
      child.once("exit", (code) => reject(new Error(`the mounting process exited (${code})`)));
    });

    const mntA = path.join(base, "mntA");
    expect((await shOk("ls -a", mntA)).split("\n").filter(Boolean).sort()).toEqual([".", "..", "afile"]);
    expect(await shOk("cat afile; cat bfile 2>&1 || echo missing", mntA)).toBe("A\ncat: bfile: No such file or directory\nmissing\n");
    await shOk("echo new > created && mkdir made", mntA);
    expect(fs.readdirSync(path.join(base, "rootA")).sort()).toEqual(["afile", "created", "made"]);
    expect(fs.readdirSync(path.join(base, "rootB")).sort()).toEqual(["bfile"]);
    expect(await shOk("cat bfile", path.join(base, "mntB"))).toBe("B-secret\n");

    child.stdin!.write("done\n");
    await new Promise((r) => child.once("exit", r));
  });
});
