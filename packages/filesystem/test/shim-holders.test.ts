// The shim's holders (setattr-shim.c): on a share the host edits, a stable number stays with the live node that first
// answered it, because virtiofsd keeps its inode under that number with an fd reaching that node. Driven through the
// same function the replies take, in this process (no FUSE server: the shim is loaded, not preloaded).
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import type * as KoffiNs from "koffi";
import { setattrShimPath } from "../src/index.js";

const so = process.env.III_TEST_SHIM ?? setattrShimPath();
const FALLBACK_HI = 0xa0000000n;

describe.skipIf(!so)("the shim's number holders", () => {
  const koffi = createRequire(import.meta.url)("koffi") as typeof KoffiNs;
  const lib = koffi.load(so as string);
  const numberFn = lib.func("uint64_t iii_test_holder_number(uint64_t node, uint64_t number, int single, int lookups)");
  const forgetFn = lib.func("void iii_test_holder_forget(uint64_t node, uint64_t n)");
  /** An entry reply for `node` whose name shows the host file with stable `number`; the number it sends. */
  const lookup = (node: number, number: bigint): bigint => BigInt(numberFn(node, number, 1, 1));
  const forget = (node: number, n: number): void => void forgetFn(node, n);

  it("a name the host renamed and then recreated keeps its old number held: the renamed file gets its own", () => {
    const x = 0x11112222_00000064n;
    const z = 0x11112222_00000065n;
    // The guest looked up app.log (node 100, host file x).
    expect(lookup(100, x)).toBe(x);
    // The host: mv app.log app.log.1; touch app.log. Node 100's name now shows the new file z.
    expect(lookup(100, z)).toBe(z);
    // app.log.1 (node 101) shows x, which virtiofsd still maps to node 100's inode: it must not be sent
    // (before the fix: x, and the guest read and wrote the new app.log through the renamed name).
    const renamed = lookup(101, x);
    expect(renamed >> 32n).toBe(FALLBACK_HI);
    expect(renamed & 0xffffffffn).toBe(101n);
    // Once the kernel forgets node 100, x is free again: a fresh node showing it gets it.
    forget(100, 2);
    expect(lookup(102, x)).toBe(x);
  });

  it("a plain host rename: the new name's node gets its own number while the old node lives", () => {
    const y = 0x11112222_00000070n;
    expect(lookup(200, y)).toBe(y);
    const moved = lookup(201, y);
    expect(moved >> 32n).toBe(FALLBACK_HI);
    forget(200, 1);
    // Node 201 keeps its own number as long as it lives (virtiofsd keyed its inode by it).
    expect(lookup(201, y)).toBe(moved);
    expect(lookup(202, y)).toBe(y);
  });
});
