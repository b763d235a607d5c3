// Deterministic 1 MiB base block and per-connection rotations, shared by the guest client and
// the host server of the concurrency test.
import { createHash } from "node:crypto";
export function baseBlock(size) {
  const out = Buffer.alloc(size);
  for (let i = 0, off = 0; off < size; i++, off += 32) createHash("sha256").update(`base:${i}`).digest().copy(out, off);
  return out;
}
export function payloadFor(base, i) {
  const cut = (i * 7919) % base.length;
  return Buffer.concat([base.subarray(cut), base.subarray(0, cut)]);
}
