// What the shim's fast paths (setattr-shim.c, ninth job) do when the world changes under them:
// - a directory renamed on the host, not through the mount: the shim's kept parent fd must not keep answering
//   for the old name longer than the kernel's attribute timeout;
// - newer syscalls (getxattrat, fchmodat2) refused with EPERM by a seccomp filter, as container runtimes do:
//   the shim falls back to the /proc path, as it does on kernels without them (ENOSYS).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, shOk, tempDir } from "./helpers.js";

// An LD_PRELOAD that installs a seccomp filter answering getxattrat (464) and fchmodat2 (452) with EPERM.
const SECCOMP_EPERM_C = String.raw`
#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
__attribute__((constructor)) static void refuse(void) {
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 464, 2, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 452, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}
`;

describe.skipIf(!fuse.ok)("the shim's fast paths when the host changes under them", () => {
  let base: string;
  let root: string;
  let h: MountHandle;

  beforeAll(async () => {
    base = tempDir("hostchg");
    root = path.join(base, "root");
    for (const d of ["root", "m", "sroot", "sm"]) fs.mkdirSync(path.join(base, d));
    h = await mountPassthrough({ root, mountpoint: path.join(base, "m") });
  });

  afterAll(async () => {
    await h?.unmount();
    if (base) rmrf(base);
  });

  it("a directory renamed on the host: after the attribute timeout, names under the old path reach the new directory", async () => {
    const m = path.join(base, "m");
    for (let i = 0; i < 3; i++) {
      // The shim resolves hr/a (and keeps its fd) for these.
      await shOk(`mkdir -p hr${i}/a && echo old > hr${i}/a/x && stat hr${i}/a/x >/dev/null`, m);
      fs.renameSync(path.join(root, `hr${i}`, "a"), path.join(root, `hr${i}`, "b"));
      fs.mkdirSync(path.join(root, `hr${i}`, "a"));
      await new Promise((r) => setTimeout(r, 1300));
      await shOk(`echo new > hr${i}/a/y`, m);
      expect([i, fs.existsSync(path.join(root, `hr${i}`, "a", "y")), fs.existsSync(path.join(root, `hr${i}`, "b", "y"))]).toEqual([i, true, false]);
      expect(await shOk(`cat hr${i}/b/x hr${i}/a/y`, m)).toBe("old\nnew\n");
    }
  });

  it("getxattrat and fchmodat2 refused by seccomp (EPERM): overrides still read, chmod still works", async () => {
    const so = path.join(base, "seccomp-eperm.so");
    fs.writeFileSync(path.join(base, "seccomp-eperm.c"), SECCOMP_EPERM_C);
    execFileSync("cc", ["-shared", "-fPIC", "-O2", "-o", so, path.join(base, "seccomp-eperm.c")]);
    const saved = process.env.LD_PRELOAD;
    process.env.LD_PRELOAD = so;
    let s: MountHandle;
    try {
      s = await mountPassthrough({ root: path.join(base, "sroot"), mountpoint: path.join(base, "sm") });
    } finally {
      if (saved === undefined) delete process.env.LD_PRELOAD;
      else process.env.LD_PRELOAD = saved;
    }
    try {
      // The filter is on in the server.
      expect(fs.readFileSync(`/proc/${s.serverPid}/status`, "utf8")).toMatch(/^Seccomp:\s+2$/m);
      const sm = path.join(base, "sm");
      // chmod 4755 writes an override (the JS side); chmod 640 of another file is the shim's (fchmodat2).
      await shOk("echo a > s && echo b > p && chmod 4755 s && chmod 640 p", sm);
      await new Promise((r) => setTimeout(r, 1100)); // the kernel asks again: the shim's getattr reads the override
      expect(await shOk("stat -c '%a %n' s p", sm)).toBe("4755 s\n640 p\n");
      expect(fs.statSync(path.join(base, "sroot", "p")).mode & 0o7777).toBe(0o640);
      for (let i = 0; i < 20; i++) await shOk(`echo $RANDOM > f${i} && chmod 60${i % 8} f${i}`, sm);
      expect(await shOk("stat -c '%a' f7 f13", sm)).toBe("607\n605\n");
    } finally {
      await s.unmount();
    }
  });
});
