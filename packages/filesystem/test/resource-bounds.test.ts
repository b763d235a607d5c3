// What one guest can make the server hold, tried the way a hostile guest would (review s15): open directory
// handles each holding a listing, directories piling up in the layered tree's caches. Each test fails with its
// bound switched off (said in the commit that added it).
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { mountPassthrough, type MountHandle } from "../src/index.js";
import { fuse, rmrf, tempDir } from "./helpers.js";

const MiB = 1024 * 1024;

function serverRss(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

/** Opens `count` handles of `dir` and reads once from each (the server fills the whole listing); returns them and how many were refused. */
function holdListings(dir: string, count: number): { held: fs.Dir[]; refused: number; firstRefused: string | undefined } {
  const held: fs.Dir[] = [];
  let refused = 0;
  let firstRefused: string | undefined;
  for (let i = 0; i < count; i++) {
    const d = fs.opendirSync(dir, { bufferSize: 1 });
    held.push(d);
    try {
      d.readSync();
    } catch (err) {
      refused++;
      firstRefused ??= (err as NodeJS.ErrnoException).code;
    }
  }
  return { held, refused, firstRefused };
}

describe.skipIf(!fuse.ok)("resource bounds against a hostile guest", () => {
  let base: string | undefined;
  let handle: MountHandle | undefined;

  afterEach(async () => {
    await handle?.unmount();
    handle = undefined;
    if (base) rmrf(base);
    base = undefined;
  });

  it("open directory handles hold at most the listing budget, and give it back when closed", async () => {
    base = tempDir("listings");
    const root = path.join(base, "root");
    const mnt = path.join(base, "mnt");
    fs.mkdirSync(path.join(root, "big"), { recursive: true });
    fs.mkdirSync(mnt);
    // 20,000 names of 205 bytes: ~4.6 MB in libfuse's buffer of each handle that read the directory.
    const pad = "n".repeat(200);
    for (let i = 0; i < 20_000; i++) fs.writeFileSync(path.join(root, "big", `${pad}${String(i).padStart(5, "0")}`), "");
    handle = await mountPassthrough({ root, mountpoint: mnt, isolation: "process" });
    const before = serverRss(handle.serverPid);
    const first = holdListings(path.join(mnt, "big"), 80);
    const grown = serverRss(handle.serverPid) - before;
    for (const d of first.held) d.closeSync();
    // 256 MiB of budget, 8 MiB of buffer a handle: 32 listings; without the bound all 80 (+370 MB).
    expect(first.firstRefused).toBe("ENOMEM");
    expect(first.refused).toBeGreaterThanOrEqual(40);
    expect(grown).toBeLessThan(200 * MiB);
    // Closed handles give their share back.
    const again = holdListings(path.join(mnt, "big"), 20);
    for (const d of again.held) d.closeSync();
    expect(again.refused).toBe(0);
  });
});
