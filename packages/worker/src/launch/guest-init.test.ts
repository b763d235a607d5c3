// The guest init start and doctor accept: one static x86-64 ELF (the guest's root may hold no libc at all).
import { copyFileSync, mkdtempSync, rmSync, writeFileSync, chmodSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findGuestInit, staticElfProblem } from "./guest-init.js";
import { runDoctor } from "../doctor.js";

const dir = mkdtempSync(join(tmpdir(), "iii-guest-init-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string | Uint8Array): string => {
  const path = join(dir, name);
  writeFileSync(path, content);
  chmodSync(path, 0o755);
  return path;
};

describe("findGuestInit", () => {
  it("finds @iii/init's dist/init.krun, a static ELF, with nothing beside it", () => {
    const found = findGuestInit({});
    expect(Object.keys(found)).toEqual(["init"]);
    expect(found.init).toMatch(/\/init\/dist\/init\.krun$/);
    expect(staticElfProblem(found.init)).toBeNull();
  });

  it("takes III_INIT_PATH when it names a static ELF", () => {
    const busybox = join(dir, "busybox");
    copyFileSync("/bin/busybox", busybox);
    expect(findGuestInit({ III_INIT_PATH: busybox })).toEqual({ init: busybox });
  });

  it("refuses a missing, dynamically linked or non-ELF init with one line naming it (VmBootFailed)", () => {
    const script = file("init.sh", "#!/bin/sh\necho hi\n");
    const truncated = file("trunc", readFileSync("/bin/busybox").subarray(0, 40));
    const cases: [string, RegExp][] = [
      [join(dir, "nope"), /^guest init \S+\/nope is missing: run "pnpm --filter @iii\/init build:static" \(or set III_INIT_PATH\)$/],
      ["/bin/true", /^guest init \/bin\/true is dynamically linked \(the guest has no libc for it\): run "pnpm/],
      [script, /^guest init \S+\/init\.sh is not an x86-64 ELF executable: run/],
      [truncated, /^guest init \S+\/trunc is not an x86-64 ELF executable: run/],
      [dir, /^guest init \S+ is not a regular file: run/],
    ];
    for (const [path, message] of cases) {
      expect(() => findGuestInit({ III_INIT_PATH: path }), path).toThrow(expect.objectContaining({ code: "VmBootFailed", message: expect.stringMatching(message) }));
    }
  });
});

describe("doctor's guest init check", () => {
  const guestInit = async (path: string) => (await runDoctor({ ...process.env, III_INIT_PATH: path })).checks.find((c) => c.name === "guest init");

  it("says static ELF and its size; fails a dynamic one; warns past the 5 MB budget", async () => {
    const busybox = join(dir, "busybox-ok");
    copyFileSync("/bin/busybox", busybox);
    expect(await guestInit(busybox)).toMatchObject({ verdict: "ok", required: true, detail: expect.stringMatching(/busybox-ok \(static ELF, \d+\.\d\d MB\)$/) });
    expect(await guestInit("/bin/true")).toMatchObject({ verdict: "fail", detail: expect.stringContaining("is dynamically linked") });
    // A static ELF padded past the budget (the Node single executable was 109 MB).
    const big = file("big", Buffer.concat([readFileSync("/bin/busybox"), Buffer.alloc(5 * 1024 * 1024)]));
    expect(await guestInit(big)).toMatchObject({ verdict: "warn", detail: expect.stringMatching(/big \(static ELF, \d+\.\d\d MB: over the 5 MB budget\)$/) });
  });
});
