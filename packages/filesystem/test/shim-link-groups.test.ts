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
  const beginFn = lib.func("void iii_test_lookup_begin(void)");
  const lookupReplyFn = lib.func("uint64_t iii_test_lookup_reply(uint64_t nodeid, uint32_t key, uint32_t ident)");
  const entryFn = lib.func("uint64_t iii_test_entry_reply(uint64_t nodeid, uint32_t key, uint32_t ident, int regular, int fails)");
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

  it("a full probe window evicts no live entry: nodes of one home slot all keep their files' numbers", () => {
    // Node ids whose home slot (Fibonacci hash, top 15 bits, the table's first size) is one: before, the ninth of
    // them took the first one's slot, and the first one's file lost its number while its node lived.
    const home = (n: bigint): bigint => ((n * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn) >> 49n;
    const nodes: number[] = [];
    const want = home(4_000_000n);
    for (let n = 4_000_000n; nodes.length < 12; n++) if (home(n) === want) nodes.push(Number(n));
    nodes.forEach((node, i) => expect(lookup(node, 0x300000 + i)).toBe(node));
    // A second name of each file: its first node's number, for every one of them.
    nodes.forEach((node, i) => expect(lookup(9_000_000 + i, 0x300000 + i)).toBe(node));
    nodes.forEach((node, i) => {
      forget(node, 1);
      forget(9_000_000 + i, 1);
    });
  });

  it("more live linked files than the table's first size: the table grows, every file keeps its number", () => {
    const n = 40_000;
    for (let i = 0; i < n; i++) expect(lookup(10_000_000 + i, 0x400000 + i)).toBe(10_000_000 + i);
    let kept = 0;
    for (let i = 0; i < n; i++) if (lookup(20_000_000 + i, 0x400000 + i) === 10_000_000 + i) kept++;
    // Before: 32,768 slots and eviction; most files' second names got numbers of their own.
    expect(kept).toBe(n);
    for (let i = 0; i < n; i++) {
      forget(10_000_000 + i, 1);
      forget(20_000_000 + i, 1);
    }
    expect(lookup(30_000_000, 0x400000)).toBe(30_000_000);
    forget(30_000_000, 1);
  });

  it("an entry reply that fails takes back only a lookup it counted (the name no longer a regular file)", () => {
    const file = 0x1003;
    expect(lookup(41, file)).toBe(41);
    // The same name's node replied as a directory (the host replaced it), and libfuse failed to send it (-ENOENT):
    // that reply counted nothing, so nothing is taken back (before: node 41's one lookup, and the node went).
    entryFn(41, 0, file, 0, 1);
    expect(lookup(42, file)).toBe(41);
    // A counted reply that fails is taken back: node 42 has its one lookup left.
    entryFn(42, file, file, 1, 1);
    forget(41, 1);
    expect(attr(42, file)).toBe(41);
    forget(42, 1);
    expect(lookup(43, file)).toBe(43);
    forget(43, 1);
  });

  it("a FORGET between libfuse's count of a lookup and the lookup's reply waits for the reply: the number stays", async () => {
    const file = 0x1004;
    expect(lookup(51, file)).toBe(51);
    expect(lookup(52, file)).toBe(51);
    forget(51, 1);
    // The file's number is its first node's while node 52 lives.
    expect(attr(52, file)).toBe(51);
    // A LOOKUP of node 52's name: libfuse has counted it (52: 2 lookups), the reply is not out yet...
    beginFn();
    // ...when the kernel's FORGET of the earlier lookup arrives, on another thread.
    const forgotten = new Promise<void>((resolve, reject) => {
      forgetFn.async(52, 1, (err: unknown) => (err ? reject(err) : resolve()));
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(Number(lookupReplyFn(52, file, file))).toBe(51);
    await forgotten;
    // Before: the FORGET took the shim's count to 0 first, the node left its group and its file's number went;
    // the reply brought the node back with a number of its own (52), a change virtiofsd answers with EIO.
    expect(attr(52, file)).toBe(51);
    forget(52, 1);
  });
});
