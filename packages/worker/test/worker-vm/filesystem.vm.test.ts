// The guest's file systems as a program in the guest uses them: the root (our FUSE view of the image layers,
// served by virtiofsd) and a writable -m share (our FUSE view of a host directory). Issue 15's guest-side
// acceptance: xattrs on both, link counts, a name that stays readable when another name of its file goes,
// device nodes/FIFOs through the metadata mapping, and the package's own xattrs out of the guest's reach.
import { chownSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { debianRootfs, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping filesystem VM tests: ${skip}`);

describe.skipIf(!!skip)("file systems in a guest (vm)", () => {
  let p: Project;
  let share: string;
  const name = "fs";

  async function sh(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const r = await p.cli(["exec", name, "--", "bash", "-c", script]);
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  }

  beforeAll(async () => {
    const rootfs = debianRootfs();
    p = new Project();
    share = join(p.dir, "share");
    mkdirSync(share);
    chownSync(share, 1000, 1000);
    const add = await p.cli(["add", `dir:${rootfs}`, "--name", name, "-m", `${share}:/data`, "--", "bash", "-c", "echo UP; sleep 100000"]);
    expect(add.code, add.stderr).toBe(0);
    const start = await p.cli(["start", name]);
    expect(start.code, start.stderr + p.diagnostics(name)).toBe(0);
    await waitFor(() => p.read(`managed/${name}/logs/stdout.log`).includes("UP"), 60_000, "the workload");
  }, 900_000);
  afterAll(async () => {
    await p?.dispose();
  });

  for (const dir of ["/xa", "/data/xa"]) {
    it(`setfattr/getfattr work in ${dir} (user.* and trusted.*), user.iii.* stays out of reach`, async () => {
      const r = await sh(`set -e; mkdir -p ${dir}; cd ${dir}; echo x > f
        setfattr -n user.color -v blue f; setfattr -n trusted.t -v secret f
        getfattr --only-values -n user.color f; echo; getfattr --only-values -n trusted.t f; echo
        getfattr -d -m - f | grep -c '^user\\.color=' ; getfattr -d -m - f | grep -c 'iii' || true
        setfattr -x user.color f; getfattr -n user.color f 2>&1 || echo REMOVED
        setfattr -n user.iii.override -v AAAA f 2>&1 || echo SET-REFUSED
        getfattr -n user.iii.override f 2>&1 || echo GET-REFUSED`);
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.split("\n");
      expect(lines.slice(0, 4)).toEqual(["blue", "secret", "1", "0"]);
      expect(r.stdout, r.stdout).toContain("REMOVED");
      expect(r.stdout, r.stdout).toMatch(/Operation not permitted\nSET-REFUSED/);
      expect(r.stdout, r.stdout).toContain("GET-REFUSED");
    });
  }

  it("setfattr/getfattr work on / itself", async () => {
    const r = await sh("setfattr -n user.rootmark -v 1 / && getfattr --only-values -n user.rootmark / && setfattr -x user.rootmark /");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe("1");
  });

  for (const dir of ["/hl", "/data/hl"]) {
    it(`hard links in ${dir}: counts on every name, a name stays readable when another goes`, async () => {
      const r = await sh(`set -e; rm -rf ${dir}; mkdir -p ${dir}; cd ${dir}
        echo content > a; stat -c %h a; ln a b; echo $(stat -c %h a b); ln b c; echo $(stat -c %h a b c)
        rm a; cat b; echo $(stat -c %h b c)
        rm b; cat c; stat -c %h c
        echo new > tmp && ln tmp final && rm tmp && cat final && stat -c %h final
        echo x > p; ln p q; rm q; stat -c %h p; ln p r; mv r s; echo $(stat -c %h p s); rm p s; ls`);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split("\n")).toEqual(["1", "2 2", "3 3 3", "content", "2 2", "content", "1", "new", "1", "1", "2 2", "c", "final", ""]);
    });
  }

  it("a name stays readable and writable after another name goes, many times in a row (no 1 s window)", async () => {
    const r = await sh(`set -e; mkdir -p /hl2; cd /hl2
      for i in $(seq 1 30); do echo "v$i" > "t$i"; ln "t$i" "f$i"; rm "t$i"; cat "f$i"; echo more >> "f$i"; stat -c %h "f$i"; done | sort | uniq -c | sort -rn | head -3`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\s+30 1\n/);
  });

  for (const dir of ["/dev-nodes", "/data/dev-nodes"]) {
    it(`device nodes, a FIFO and a socket in ${dir} show their type and numbers; the FIFO works`, async () => {
      const r = await sh(`set -e; rm -rf ${dir}; mkdir -p ${dir}; cd ${dir}
        mknod blk b 8 3; mknod chr c 1 8; mkfifo fifo
        stat -c '%n %F %t:%T' blk chr fifo
        (echo through-fifo > fifo &) ; cat fifo
        head -c 4 chr | wc -c`);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("blk block special file 8:3");
      expect(r.stdout).toContain("chr character special file 1:8");
      expect(r.stdout).toContain("fifo fifo 0:0");
      expect(r.stdout).toContain("through-fifo");
      expect(r.stdout).toMatch(/\n4\n/);
    });
  }

  it("the host side of the share holds no device node or FIFO", () => {
    const entries = readdirSync(join(share, "dev-nodes"), { withFileTypes: true });
    expect(entries.map((e) => `${e.name}:${e.isFile()}`).sort()).toEqual(["blk:true", "chr:true", "fifo:true"]);
  });
});
