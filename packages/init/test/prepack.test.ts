// The prepack check (scripts/check-pack.mjs): @iii/init is never packed without the guest init the worker boots.
import { spawnSync } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const PACKAGE_DIR = fileURLToPath(new URL("..", import.meta.url));
const CHECK = join(PACKAGE_DIR, "scripts", "check-pack.mjs");
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the package as the pack step sees it (package.json, NOTICE, scripts, the built files). */
function packageCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), "iii-init-pack-"));
  dirs.push(dir);
  for (const file of ["package.json", "NOTICE", "LICENSE", "README.md"]) copyFileSync(join(PACKAGE_DIR, file), join(dir, file));
  cpSync(join(PACKAGE_DIR, "licenses"), join(dir, "licenses"), { recursive: true });
  mkdirSync(join(dir, "scripts"));
  for (const file of ["check-pack.mjs", "build-static.mjs"]) copyFileSync(join(PACKAGE_DIR, "scripts", file), join(dir, "scripts", file));
  mkdirSync(join(dir, "dist"));
  for (const file of ["index.js", "index.d.ts", "init.krun"]) cpSync(join(PACKAGE_DIR, "dist", file), join(dir, "dist", file));
  return dir;
}

function check(dir: string): { status: number | null; stderr: string } {
  const run = spawnSync(process.execPath, [CHECK, dir], { encoding: "utf8" });
  return { status: run.status, stderr: run.stderr };
}

describe("@iii/init prepack check", () => {
  it("passes the built package", () => {
    expect(check(PACKAGE_DIR)).toEqual({ status: 0, stderr: "" });
  });

  it("npm pack refuses a package without dist/init.krun, with one line, and writes no tarball", () => {
    const dir = packageCopy();
    rmSync(join(dir, "dist", "init.krun"));
    const pack = spawnSync("npm", ["pack", "--pack-destination", dir], { cwd: dir, encoding: "utf8" });
    expect(pack.status).not.toBe(0);
    expect(pack.stderr).toContain(
      '@iii/init: refusing to pack: dist/init.krun, the guest init @iii/worker boots, is missing (run "pnpm --filter @iii/init build:static")\n',
    );
    expect(readdirSync(dir).filter((f) => f.endsWith(".tgz"))).toEqual([]);
  });

  it("npm pack of the complete copy ships init.krun, NOTICE and the LGPL text, and no build leftovers", () => {
    const dir = packageCopy();
    mkdirSync(join(dir, "dist", "static"));
    writeFileSync(join(dir, "dist", "static", "init.c"), "");
    writeFileSync(join(dir, "dist", "init-static"), "");
    const pack = spawnSync("npm", ["pack", "--dry-run", "--json"], { cwd: dir, encoding: "utf8" });
    expect(pack.status, pack.stderr).toBe(0);
    const json = pack.stdout.slice(pack.stdout.indexOf("["));
    const files = (JSON.parse(json) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path).sort();
    expect(files).toEqual(["LICENSE", "NOTICE", "README.md", "dist/index.d.ts", "dist/index.js", "dist/init.krun", "licenses/LGPL-2.1.txt", "package.json"]);
  });

  it.each([
    ["dist/index.js", 'dist/index.js is missing (run "pnpm --filter @iii/init build")'],
    ["dist/index.d.ts", 'dist/index.d.ts is missing (run "pnpm --filter @iii/init build")'],
  ])("refuses without %s", (file, reason) => {
    const dir = packageCopy();
    rmSync(join(dir, file));
    expect(check(dir)).toEqual({ status: 1, stderr: `@iii/init: refusing to pack: ${reason}\n` });
  });

  it("refuses a dynamically linked init (the guest has no libc for it)", () => {
    const dir = packageCopy();
    copyFileSync("/bin/true", join(dir, "dist", "init.krun"));
    expect(check(dir).stderr).toMatch(/^@iii\/init: refusing to pack: dist\/init.krun is dynamically linked/);
  });

  it("refuses an init over the 5 MB budget (the SEA was 109 MB)", () => {
    const dir = packageCopy();
    const init = readFileSync(join(dir, "dist", "init.krun"));
    writeFileSync(join(dir, "dist", "init.krun"), Buffer.concat([init, Buffer.alloc(5 * 1024 * 1024 - init.length + 1)]), { mode: 0o755 });
    expect(check(dir)).toEqual({ status: 1, stderr: `@iii/init: refusing to pack: dist/init.krun is ${5 * 1024 * 1024 + 1} bytes, over the 5 MB budget (run "pnpm --filter @iii/init build:static")\n` });
  });

  it("refuses an init that is not an executable ELF", () => {
    const dir = packageCopy();
    writeFileSync(join(dir, "dist", "init.krun"), "#!/bin/sh\n", { mode: 0o755 });
    expect(check(dir)).toMatchObject({ status: 1, stderr: expect.stringMatching(/is not an x86-64 ELF executable/) });
  });

  it("refuses a NOTICE whose glibc version is not the one linked", () => {
    const dir = packageCopy();
    const notice = readFileSync(join(dir, "NOTICE"), "utf8");
    writeFileSync(join(dir, "NOTICE"), notice.replace(/GNU C Library \(glibc\) [\d.]+/, "GNU C Library (glibc) 1.0"));
    expect(check(dir)).toMatchObject({ status: 1, stderr: expect.stringMatching(/^@iii\/init: refusing to pack: NOTICE names glibc 1\.0 but dist\/init.krun links glibc \d/) });
  });
});
