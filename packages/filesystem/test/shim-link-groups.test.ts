// The shim's link-group table (setattr-shim.c): every name of a linked file shows one number (the first node's id)
// for as long as a node of the file lives in libfuse, and the number goes with the file's last node. libfuse
// frees a node only when its lookup count reaches 0, so a FORGET that leaves a count (a LOOKUP answered while the
// kernel evicted the inode) must not drop the node, nor with it its file's number. The kernel's timing cannot be
// steered through a mount, so the table is driven here through the same functions the replies and FORGETs take,
// in this process (no FUSE server: the shim is loaded, not preloaded).
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import type * as KoffiNs from "koffi";
import { setattrShimPath } from "../src/index.js";

const so = process.env.III_TEST_SHIM ?? setattrShimPath();

describe.skipIf(!so)("the shim's link groups", () => {
  const koffi = createRequire(import.meta.url)("koffi") as typeof KoffiNs;
  const lib = koffi.load(so as string);
  const replyFn = lib.func("uint64_t iii_test_group_reply(uint64_t nodeid, uint32_t key, uint32_t ident, int lookups)");
  const forgetFn = lib.func("void iii_test_group_forget(uint64_t nodeid, uint64_t n)");
  /** An entry reply (lookup) or attribute reply for `node` of file `file`; the number it sends. */
  const lookup = (node: number, file: number): number => Number(replyFn(node, file, file, 1));
  const attr = (node: number, file: number): number => Number(replyFn(node, file, file, 0));
  const forget = (node: number, n = 1): void => void forgetFn(node, n);

  it("a FORGET that leaves lookups keeps the node and its file's number (a LOOKUP raced the eviction)", () => {
    const file = 0x1001;
    expect(lookup(5, file)).toBe(5);
    // The kernel evicts node 5's inode (FORGET 1) while a LOOKUP of the same name was answered: libfuse's count 1.
    expect(lookup(5, file)).toBe(5);
    forget(5, 1);
    // Another name of the file: still the live node's number (before: 9, the number changed under virtiofsd).
    expect(lookup(9, file)).toBe(5);
    expect(attr(9, file)).toBe(5);
  });

  it("the number goes with the file's last node: a new file on the same host inode gets its own", () => {
    const file = 0x1002;
    expect(lookup(21, file)).toBe(21);
    expect(lookup(22, file)).toBe(21);
    expect(lookup(22, file)).toBe(21);
    forget(21, 1);
    expect(attr(22, file)).toBe(21);
    forget(22, 2);
    expect(lookup(23, file)).toBe(23);
    forget(23, 1);
    // A node that joined at an attribute reply (its lookups were counted before the file had links) goes at its
    // first FORGET.
    expect(attr(24, file)).toBe(24);
    forget(24, 3);
    expect(lookup(25, file)).toBe(25);
  });

  it("forgetting the last node of many linked files costs no scan of the table", () => {
    const n = 50_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const node = 1_000_000 + i;
      lookup(node, 0x200000 + i);
      forget(node, 1);
    }
    const ms = performance.now() - t0;
    // Each of these forgets scanned 32,768 slots before (1.7 s for 50,000 on this host); now a few probes.
    expect(ms).toBeLessThan(400);
    // And none left a number behind.
    expect(lookup(3_000_000, 0x200000)).toBe(3_000_000);
  });
});
