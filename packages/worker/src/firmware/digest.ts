import { createHash } from "node:crypto";
import { mkdirsSync } from "../host/mkdirs.js";
import { createReadStream, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { IiiError } from "../errors.js";
import { writeFileAtomicSync } from "../util/atomic-write.js";

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

interface DigestMemo {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  sha256: string;
}

/**
 * sha256 of a file, remembered in `memoPath` by (device, inode, size, mtime, ctime): hashing the 21 MB
 * library costs 50–90 ms here, on every start's critical path. Any write to the file changes its ctime
 * (which cannot be set from user space), so a stale memo cannot survive a modification; the memo guards
 * against corruption and mix-ups, not against someone who can also write the memo. Any memo problem
 * falls back to hashing.
 */
export async function sha256FileMemo(path: string, memoPath: string | undefined): Promise<string> {
  if (!memoPath) return sha256File(path);
  const st = statSync(path);
  const key = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
  let memo: Record<string, DigestMemo> = {};
  try {
    memo = JSON.parse(readFileSync(memoPath, "utf8")) as Record<string, DigestMemo>;
  } catch {
    // no memo yet, or unreadable: start afresh
  }
  const known = memo[path];
  if (known && known.dev === key.dev && known.ino === key.ino && known.size === key.size && known.mtimeMs === key.mtimeMs && known.ctimeMs === key.ctimeMs && /^[0-9a-f]{64}$/.test(known.sha256)) {
    return known.sha256;
  }
  const sha256 = await sha256File(path);
  try {
    memo[path] = { ...key, sha256 };
    mkdirsSync(dirname(memoPath));
    writeFileAtomicSync(memoPath, JSON.stringify(memo), { fsync: false });
  } catch {
    // a read-only home only costs the next start another hash
  }
  return sha256;
}

export function digestMismatch(what: string, actual: string, expected: string): IiiError {
  return new IiiError("FirmwareCorrupt", `${what} has sha256 ${actual}, expected ${expected} (firmware/manifest.json)`);
}
