import { lstatSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { IiiError } from "../errors.js";
import { withFileLock } from "./file-lock.js";
import { isSameProcessAlive, processStartTime, type ProcessIdentity } from "./process-identity.js";

/**
 * The uid a confined QEMU drops to, unique on the host while that QEMU lives. Two QEMUs under one uid could
 * signal each other, change each other's resource limits (prlimit) or read each other's /proc
 * entries: a guest that took over one VM's QEMU would reach the other VM. The network slot is unique only
 * within one III_HOME, so the uid is leased host-wide instead: a lease file per uid in a root-only directory
 * under /run (cleared at boot), written under one lock by the process that owns the QEMU, released when it is
 * gone (a lease whose owner died is removed by the next lease). A uid is free when no live owner or QEMU holds its
 * lease and no process on the host runs as it (a QEMU whose supervisor was killed outright keeps its uid until it
 * ends: by its lease while it still runs as root, before its setuid, and by its uid after).
 */
export interface QemuUidLease {
  readonly uid: number;
  /**
   * Names the process that will run as the uid (QEMU, just spawned): the lease is held while it lives too, so a
   * supervisor killed before QEMU's setuid (no process shows the uid yet) does not free the uid for another QEMU.
   * Never throws.
   */
  holdFor(pid: number): void;
  /** Gives the uid back; call once the QEMU that ran as it has exited. Never throws. */
  release(): Promise<void>;
}

export const HOST_LEASE_DIR = "/run/iii/qemu-uids";

interface LeaseRecord extends ProcessIdentity {
  uid: number;
  /** The QEMU running (or about to run) as the uid. */
  child?: ProcessIdentity;
}

/** Leases the lowest free uid in `base .. base + count - 1` to this process (no account's or group's id). */
export async function leaseQemuUid(base: number, count: number, dir = HOST_LEASE_DIR): Promise<QemuUidLease> {
  await ensurePrivateDir(dir);
  const owner = ownIdentity();
  const uid = await withFileLock(join(dir, ".lock"), async () => {
    const held = await liveLeases(dir);
    const running = uidsInUse(base, count);
    const accounts = idsOfAccounts(base, count);
    for (let uid = base; uid < base + count; uid++) {
      if (running.has(uid) || held.has(uid) || accounts.has(uid)) continue;
      writeLease(dir, { uid, ...owner });
      return uid;
    }
    throw new IiiError("VmBootFailed", `no free uid for QEMU in ${base}..${base + count - 1}: every one is leased or in use (${dir})`);
  });
  let released = false;
  return {
    uid,
    holdFor(pid) {
      const startTime = processStartTime(pid);
      if (released || startTime === undefined) return;
      // No lock: only this live owner writes this uid's lease (others remove it only once its owner and child are
      // gone), and the rename replaces it whole. Synchronous, right after the spawn.
      try {
        writeLease(dir, { uid, ...owner, child: { pid, startTime } });
      } catch {
        // the owner's lease stands: only a death of this process before QEMU's setuid could free the uid early
      }
    },
    async release() {
      if (released) return;
      released = true;
      try {
        await withFileLock(join(dir, ".lock"), async () => {
          const path = join(dir, String(uid));
          const holder = await readLease(path);
          if (typeof holder === "object" && holder.pid === owner.pid && holder.startTime === owner.startTime) await rm(path, { force: true });
        });
      } catch {
        // the lease stays until its owner is gone; the next lease reclaims it
      }
    },
  };
}

/** Writes a lease whole (temporary file, then rename over the old one). */
function writeLease(dir: string, record: LeaseRecord): void {
  const path = join(dir, String(record.uid));
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(record), { mode: 0o600 });
  renameSync(tmp, path);
}

function ownIdentity(): ProcessIdentity {
  const startTime = processStartTime(process.pid);
  if (startTime === undefined) throw new IiiError("Internal", "cannot read this process's start time from /proc");
  return { pid: process.pid, startTime };
}

/** The lease directory, made root-only; one another user made or could write is refused rather than trusted. */
async function ensurePrivateDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new IiiError("VmBootFailed", `cannot create QEMU's uid lease directory ${dir}: ${(error as Error).message}`, { cause: error });
  }
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== process.geteuid?.() || (st.mode & 0o022) !== 0) {
    throw new IiiError("VmBootFailed", `QEMU's uid lease directory ${dir} is not a directory of this user's that only it can write`);
  }
}

/**
 * The uids whose lease has a live owner or QEMU; leases whose owner and QEMU are gone, or that hold no lease
 * record, are removed on the way. A lease that cannot be read (EMFILE, EIO) counts as live: never freed by doubt.
 */
async function liveLeases(dir: string): Promise<Set<number>> {
  const live = new Set<number>();
  for (const name of await readdir(dir)) {
    if (!/^\d+$/.test(name)) continue;
    const lease = await readLease(join(dir, name));
    if (lease === "gone") continue;
    if (lease === "unreadable" || (lease !== "invalid" && (isSameProcessAlive(lease) || (lease.child !== undefined && isSameProcessAlive(lease.child))))) {
      live.add(Number(name));
    } else {
      await rm(join(dir, name), { force: true });
    }
  }
  return live;
}

async function readLease(path: string): Promise<LeaseRecord | "gone" | "invalid" | "unreadable"> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT" ? "gone" : "unreadable";
  }
  try {
    const record = JSON.parse(text) as Partial<LeaseRecord>;
    return typeof record.pid === "number" && typeof record.startTime === "number" ? (record as LeaseRecord) : "invalid";
  } catch {
    return "invalid";
  }
}

/** The ids in range that name an account or a group in /etc/passwd or /etc/group: never handed to QEMU. */
export function idsOfAccounts(base: number, count: number, files = ["/etc/passwd", "/etc/group"]): Set<number> {
  const ids = new Set<number>();
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const id = Number(line.split(":")[2]);
      if (Number.isInteger(id) && id >= base && id < base + count) ids.add(id);
    }
  }
  return ids;
}

/** The ids in range any process on the host runs as (real, effective, saved or filesystem uid or gid). */
export function uidsInUse(base: number, count: number, proc = "/proc"): Set<number> {
  const used = new Set<number>();
  let pids: string[];
  try {
    pids = readdirSync(proc).filter((name) => /^\d+$/.test(name));
  } catch {
    return used;
  }
  for (const pid of pids) {
    let status: string;
    try {
      status = readFileSync(join(proc, pid, "status"), "utf8");
    } catch {
      continue; // ended meanwhile
    }
    // QEMU runs with gid = uid: a process with the id as its gid holds it too.
    for (const line of status.matchAll(/^(?:Uid|Gid):\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/gm)) {
      for (const field of line.slice(1)) {
        const id = Number(field);
        if (id >= base && id < base + count) used.add(id);
      }
    }
  }
  return used;
}

