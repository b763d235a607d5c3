import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { idsOfAccounts, leaseQemuUid, uidsInUse } from "./qemu-uid-lease.js";
import { processStartTime } from "./process-identity.js";

const root = process.geteuid?.() === 0;
if (!root) console.warn("[host] skipping QEMU uid lease tests: not root (they run processes as the leased uids)");

// A range no user of this machine has; each test takes its own slice of it.
const BASE = 0x7ff00000;

describe.skipIf(!root)("QEMU's host-wide uid lease", () => {
  const work = mkdtempSync(join(tmpdir(), "iii-uid-lease-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  let n = 0;
  const leaseDir = () => join(work, `leases-${n++}`);

  it("gives two VMs two uids, so a confined QEMU taken over by its guest cannot kill the other VM's QEMU", async () => {
    // Two workers, as from two III_HOMEs whose network slots are both 0: before the lease both QEMUs ran as base + 0.
    const dir = leaseDir();
    const a = await leaseQemuUid(BASE, 16, dir);
    const b = await leaseQemuUid(BASE, 16, dir);
    const victim = spawn("sleep", ["60"], { uid: a.uid, gid: a.uid, stdio: "ignore" });
    try {
      await new Promise((r) => victim.once("spawn", r));
      // What code running as the other QEMU would do.
      const attack = spawnSync("kill", ["-9", String(victim.pid)], { uid: b.uid, gid: b.uid, encoding: "utf8" });
      expect(attack.status).not.toBe(0);
      expect(attack.stderr).toMatch(/not permitted/i);
      expect(processStartTime(victim.pid!)).toBeDefined();
      expect(a.uid).not.toBe(b.uid);
    } finally {
      victim.kill("SIGKILL");
      await a.release();
      await b.release();
    }
  });

  it("hands a released uid out again, and never one a running process still has (a QEMU whose supervisor was killed)", async () => {
    const dir = leaseDir();
    const first = await leaseQemuUid(BASE + 100, 4, dir);
    expect(first.uid).toBe(BASE + 100);
    await first.release();
    expect(readdirSync(dir).filter((f) => !f.startsWith("."))).toEqual([]);
    const orphan = spawn("sleep", ["60"], { uid: BASE + 100, gid: BASE + 100, stdio: "ignore" });
    try {
      await new Promise((r) => orphan.once("spawn", r));
      expect(uidsInUse(BASE + 100, 4).has(BASE + 100)).toBe(true);
      const next = await leaseQemuUid(BASE + 100, 4, dir);
      expect(next.uid).toBe(BASE + 101);
      await next.release();
    } finally {
      orphan.kill("SIGKILL");
    }
  });

  it("reclaims the lease of an owner that died, keeps a live owner's, and fails with a clear line when all are taken", async () => {
    const dir = leaseDir();
    const held = await leaseQemuUid(BASE + 200, 2, dir);
    const dead = spawnSync("true");
    expect(dead.pid).toBeGreaterThan(0);
    writeFileSync(join(dir, String(BASE + 201)), JSON.stringify({ uid: BASE + 201, pid: dead.pid, startTime: 1 }));
    writeFileSync(join(dir, String(BASE + 900)), JSON.stringify({ uid: BASE + 900, pid: dead.pid, startTime: 1 }));
    const reclaimed = await leaseQemuUid(BASE + 200, 2, dir);
    expect(reclaimed.uid).toBe(BASE + 201);
    // Every dead owner's lease is cleared on the way, in or out of the range asked for: /run does not fill up.
    expect(readdirSync(dir).filter((f) => !f.startsWith(".")).sort()).toEqual([String(BASE + 200), String(BASE + 201)]);
    await expect(leaseQemuUid(BASE + 200, 2, dir)).rejects.toMatchObject({ code: "VmBootFailed", message: expect.stringMatching(/no free uid for QEMU/) });
    await held.release();
    await reclaimed.release();
    // Released twice: harmless, and it does not remove a lease someone else took since.
    const again = await leaseQemuUid(BASE + 200, 2, dir);
    await held.release();
    expect(readdirSync(dir)).toContain(String(again.uid));
    await again.release();
  });

  it("keeps the uid of a QEMU whose supervisor died before QEMU's setuid (QEMU still root) from the next lease", async () => {
    const dir = leaseDir();
    const lease = await leaseQemuUid(BASE + 400, 4, dir);
    // QEMU just spawned: it runs as root until its setuid, so no process shows the leased uid yet.
    const qemu = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      await new Promise((r) => qemu.once("spawn", r));
      lease.holdFor(qemu.pid!);
      // The supervisor is killed outright here: its lease now names an owner that is gone.
      const dead = spawnSync("true");
      const path = join(dir, String(lease.uid));
      writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), pid: dead.pid, startTime: 1 }));
      expect(uidsInUse(BASE + 400, 4).has(lease.uid)).toBe(false);
      // Another supervisor starts a VM meanwhile: its QEMU must not get the uid the first QEMU is about to take.
      const next = await leaseQemuUid(BASE + 400, 4, dir);
      expect(next.uid).not.toBe(lease.uid);
      await next.release();
      qemu.kill("SIGKILL");
      await new Promise((r) => qemu.once("exit", r));
      // Once that QEMU is gone too, its lease is reclaimed.
      const after = await leaseQemuUid(BASE + 400, 4, dir);
      expect(after.uid).toBe(lease.uid);
      await after.release();
    } finally {
      qemu.kill("SIGKILL");
    }
  });

  it("skips ids a process holds as its gid, and ids /etc/passwd or /etc/group name", async () => {
    const dir = leaseDir();
    const byGid = spawn("sleep", ["60"], { gid: BASE + 400, stdio: "ignore" });
    try {
      await new Promise((r) => byGid.once("spawn", r));
      expect(uidsInUse(BASE + 400, 2).has(BASE + 400)).toBe(true);
      const lease = await leaseQemuUid(BASE + 400, 2, dir);
      expect(lease.uid).toBe(BASE + 401);
      await lease.release();
    } finally {
      byGid.kill("SIGKILL");
    }
    const passwd = join(work, "passwd");
    writeFileSync(passwd, `alice:x:${BASE + 500}:100::/home/alice:/bin/sh\nbroken line\n`);
    const group = join(work, "group");
    writeFileSync(group, `staff:x:${BASE + 501}:\n`);
    expect([...idsOfAccounts(BASE + 500, 4, [passwd, group])].sort()).toEqual([BASE + 500, BASE + 501]);
  });

  it("never frees a lease it could not read, and clears one that holds no lease record", async () => {
    const dir = leaseDir();
    const held = await leaseQemuUid(BASE + 600, 3, dir);
    // A lease whose read fails (here: a directory where the file should be; in life EMFILE or EIO) stays taken.
    mkdirSync(join(dir, String(BASE + 601)));
    writeFileSync(join(dir, String(BASE + 602)), "{ not json");
    const next = await leaseQemuUid(BASE + 600, 3, dir);
    expect(next.uid).toBe(BASE + 602);
    expect(readdirSync(dir)).toContain(String(BASE + 601));
    await held.release();
    await next.release();
    rmSync(join(dir, String(BASE + 601)), { recursive: true });
  });

  it("refuses a lease directory another user could write", async () => {
    const dir = leaseDir();
    await (await leaseQemuUid(BASE + 300, 1, dir)).release();
    chmodSync(dir, 0o777);
    await expect(leaseQemuUid(BASE + 300, 1, dir)).rejects.toMatchObject({ code: "VmBootFailed", message: expect.stringMatching(/only it can write/) });
  });
});
