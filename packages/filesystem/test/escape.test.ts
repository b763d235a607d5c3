// Escape suite: every operation, handed paths that lead through symlinks, '..'
// chains, loops or renamed directories, must stay inside the root. A canary
// directory next to the root proves nothing outside was touched.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GuestFs } from "../src/fs/guest-fs.js";
import { LayeredTree } from "../src/fs/layered-tree.js";
import { PassthroughTree } from "../src/fs/passthrough-tree.js";
import type { Tree } from "../src/fs/tree.js";
import { VirtualFiles } from "../src/fs/virtual-files.js";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, sh, shOk, tempDir } from "./helpers.js";

/** Everything observable about the canary: names, types, modes, owners, sizes, times, content, xattrs. */
function canaryState(dir: string): string {
  const out: string[] = [];
  const walk = (p: string): void => {
    const st = fs.lstatSync(p, { bigint: true });
    out.push(`${path.relative(dir, p)} ${st.mode} ${st.uid}:${st.gid} ${st.size} m${st.mtimeNs} c${st.ctimeNs} n${st.nlink}`);
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n));
    else if (st.isFile()) out.push(fs.readFileSync(p, "base64"));
  };
  walk(dir);
  return out.join("\n");
}

function makeCanary(base: string): string {
  const canary = path.join(base, "canary");
  fs.mkdirSync(path.join(canary, "sub"), { recursive: true });
  fs.writeFileSync(path.join(canary, "secret.txt"), "canary secret\n");
  fs.writeFileSync(path.join(canary, "sub", "deep.txt"), "deep\n");
  return canary;
}

/** Symlinks planted in the root (as an image or a guest could): all lead outside. */
function plantLinks(root: string, base: string): string[] {
  const links: [string, string][] = [
    ["to-root", "/"],
    ["to-canary-abs", path.join(base, "canary")],
    ["to-canary-rel", "../canary"],
    ["to-canary-dotdots", "../../../../../../../../" + path.join(base, "canary").slice(1)],
    ["loop-a", "loop-b"],
    ["loop-b", "loop-a"],
    ["self", "self"],
  ];
  for (const [name, target] of links) fs.symlinkSync(target, path.join(root, name));
  fs.mkdirSync(path.join(root, "dir"));
  fs.symlinkSync("../../canary", path.join(root, "dir", "up2"));
  return [...links.map(([n]) => `/${n}`), "/dir/up2"];
}

function attempt(fn: () => unknown): number | "ok" {
  try {
    fn();
    return "ok";
  } catch (err) {
    const e = (err as { errno?: number }).errno;
    return typeof e === "number" ? e : -9999;
  }
}

function allOps(g: GuestFs, via: string): Record<string, number | "ok"> {
  const S = `${via}/secret.txt`;
  const r: Record<string, number | "ok"> = {};
  const RD = fs.constants.O_RDONLY;
  const RW = fs.constants.O_RDWR;
  r.getattr = attempt(() => g.getattr(S));
  r.readdir = attempt(() => g.readdir(via));
  r.readdirSub = attempt(() => g.readdir(`${via}/sub`));
  r.openRead = attempt(() => g.release(g.open(S, RD)));
  r.openWrite = attempt(() => g.release(g.open(S, RW | fs.constants.O_TRUNC)));
  r.openLinkItself = attempt(() => g.release(g.open(via, RD)));
  r.create = attempt(() => g.release(g.create(`${via}/created`, 0o644)));
  r.mkdir = attempt(() => g.mkdir(`${via}/newdir`, 0o755));
  r.mknod = attempt(() => g.mknod(`${via}/fifo`, 0o10644, 0));
  r.symlink = attempt(() => g.symlink("x", `${via}/newlink`));
  r.unlink = attempt(() => g.unlink(S));
  r.rmdir = attempt(() => g.rmdir(`${via}/sub`));
  r.renameOut = attempt(() => g.rename(S, "/stolen"));
  r.renameIn = attempt(() => g.rename("/inside.txt", `${via}/planted`));
  r.link = attempt(() => g.link(S, "/hardlink"));
  r.linkIn = attempt(() => g.link("/inside.txt", `${via}/hl`));
  r.chmod = attempt(() => g.chmod(S, 0o777));
  r.chmodLink = attempt(() => g.chmod(via, 0o777));
  r.chown = attempt(() => g.chown(S, 1, 1));
  r.truncate = attempt(() => g.truncate(S, 0));
  r.truncateLink = attempt(() => g.truncate(via, 0));
  r.utimens = attempt(() => g.utimens(S, { sec: 1, nsec: 0 }, { sec: 1, nsec: 0 }));
  r.setxattr = attempt(() => g.setxattr(S, "user.pwn", Buffer.from("1"), 0));
  r.setxattrLink = attempt(() => g.setxattr(via, "user.pwn", Buffer.from("1"), 0));
  r.getxattr = attempt(() => g.getxattr(S, "user.x"));
  r.listxattr = attempt(() => g.listxattr(S));
  r.removexattr = attempt(() => g.removexattr(S, "user.x"));
  r.access = attempt(() => g.access(S, 4));
  r.readlinkThrough = attempt(() => g.readlink(`${via}/sub`));
  return r;
}

describe("escape suite: no operation leaves the root", () => {
  let base: string;
  let canary: string;
  let before: string;

  beforeAll(() => {
    base = tempDir("escape");
    canary = makeCanary(base);
    before = canaryState(canary);
  });

  afterAll(() => {
    if (base) rmrf(base);
  });

  const cases: [string, (root: string) => Tree][] = [
    ["passthrough", (root) => new PassthroughTree(root)],
    [
      "layered (links in lower)",
      (root) => {
        const upper = `${root}-upper`;
        fs.mkdirSync(upper);
        return new LayeredTree(root, upper);
      },
    ],
  ];

  for (const [label, makeTree] of cases) {
    it(`${label}: every op through every escaping symlink fails, canary untouched`, () => {
      const root = path.join(base, `root-${label.split(" ")[0]}`);
      fs.mkdirSync(root);
      fs.writeFileSync(path.join(root, "inside.txt"), "inside\n");
      const links = plantLinks(root, base);
      const g = new GuestFs(makeTree(root), new VirtualFiles(undefined), false);
      try {
        for (const via of links) {
          const results = allOps(g, via);
          for (const [op, res] of Object.entries(results)) {
            // chmod/setxattr on the link itself act on the link (EOPNOTSUPP/EPERM); nothing may succeed through it.
            expect(res, `${label} ${op} via ${via}`).not.toBe("ok");
          }
          expect(canaryState(canary), `after ${via}`).toBe(before);
        }
        // The links themselves are ordinary guest data.
        expect(g.readlink("/to-root")).toBe("/");
        expect(g.getattr("/loop-a").mode & 0o170000).toBe(0o120000);
        // '..' chains and NUL are refused before any host path is built.
        expect(attempt(() => g.getattr("/../canary/secret.txt"))).toBe(-1);
        expect(attempt(() => g.getattr("/dir/../../canary/secret.txt"))).toBe(-1);
        expect(attempt(() => g.create("/dir/../../canary/x", 0o644))).toBe(-1);
        expect(attempt(() => g.getattr("/inside.txt\0/x"))).toBe(-22);
        expect(attempt(() => g.getattr("inside.txt"))).toBe(-22);
        // Renaming a real directory and putting a symlink in its place: pinned fds follow
        // the rename, and the new symlink is never traversed.
        g.mkdir("/moving", 0o755);
        g.release(g.create("/moving/f", 0o644));
        expect(g.getattr("/moving/f").size).toBe(0);
        g.rename("/moving", "/moved");
        g.symlink("../canary", "/moving");
        // ENOTDIR/ELOOP/ENOENT depending on the layer: any error, never the canary's file.
        expect(attempt(() => g.getattr("/moving/secret.txt"))).toBeLessThan(0);
        expect(attempt(() => g.release(g.create("/moving/f", 0o644)))).toBeLessThan(0);
        expect(g.getattr("/moved/f").size).toBe(0);
        expect(canaryState(canary)).toBe(before);
        expect(fs.readFileSync(path.join(root, "inside.txt"), "utf8")).toBe("inside\n");
      } finally {
        g.close();
      }
    });
  }

  it.skipIf(!fuse.ok)("through a mount: racing rename/symlink swaps against open, write, chmod never reach the canary", async () => {
    const root = path.join(base, "race-root");
    const mnt = path.join(base, "mnt", "m");
    fs.mkdirSync(root);
    fs.mkdirSync(mnt, { recursive: true });
    fs.mkdirSync(path.join(root, "d"));
    fs.writeFileSync(path.join(root, "d", "secret.txt"), "decoy\n");
    let handle: MountHandle | undefined;
    try {
      // Long caches: the guest kernel keeps believing "d" is a directory while the host
      // side swaps it for a symlink (a rename racing an open, seen from the server).
      handle = await mountPassthrough({ root, mountpoint: mnt, cache: { entryTimeoutSec: 60, attrTimeoutSec: 60 } });
      await shOk("ls d; cat d/secret.txt", mnt);
      // "../canary" resolves to the canary from the host root's parent, but to a
      // non-existent dir from the mountpoint's parent: only a server that followed the
      // symlink on the host could reach the canary.
      const swapper = sh(
        `end=$((SECONDS+4)); while [ $SECONDS -lt $end ]; do mv -T d d.real; ln -s ../canary d; sleep 0.01; rm d; mv -T d.real d; done; true`,
        root,
      );
      const attacker = sh(
        `end=$((SECONDS+4)); while [ $SECONDS -lt $end ]; do cat d/secret.txt >/dev/null 2>&1; echo pwned > d/secret.txt 2>/dev/null; chmod 777 d/secret.txt 2>/dev/null; touch d/new 2>/dev/null; ln -s x d/l 2>/dev/null; setfattr -n user.p -v 1 d/secret.txt 2>/dev/null; rm -f d/sub/deep.txt 2>/dev/null; mkdir d/nd 2>/dev/null; ls d >/dev/null 2>&1; done; true`,
        mnt,
      );
      await Promise.all([swapper, attacker]);
      expect(canaryState(canary)).toBe(before);
      // The attacker did act inside: the real d got written while it was in place.
      const inside = await shOk("cat d/secret.txt", root);
      expect(inside).toMatch(/pwned|decoy/);
    } finally {
      await handle?.unmount();
    }
    expect(canaryState(canary)).toBe(before);
  });
});
