import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runDev } from "../src/cli/commands/dev-run.js";
import { assertNoDirSharedWithPreview1 } from "../src/launch/cross-tier.js";
import type { WorkerSpec } from "../src/state/model.js";
import { runWorkerCli } from "./helpers.js";
import { exitWith, wat } from "./wasm/wat.js";

// A VM guest writing a directory that a preview 1 module also mounts can plant `up -> /` while the module runs;
// node:wasi follows a link in the middle of a path, so the module (root's runner) reaches the host through it.
// The runner's link walk happens once, at the module's start (wasm/mount-links.ts): the pair is refused instead.
const dir = mkdtempSync(join(tmpdir(), "iii-cross-tier-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const REFUSED = /^iii-worker: VM worker "(\w+)" shares \S+ \(\/\w+\) writable and preview 1 WASM worker "(\w+)" mounts \S+ \(\/\w+\): .*make the VM's share read-only \(:ro\), or use separate directories \[InvalidOption\]\n$/;

async function project(name: string) {
  const root = join(dir, name);
  mkdirSync(join(root, "data", "sub"), { recursive: true });
  mkdirSync(join(root, "rootfs"));
  mkdirSync(join(root, "other", "inner"), { recursive: true });
  writeFileSync(join(root, "app.wasm"), await wat(exitWith(0, "hi\n")));
  const cli = (args: string[]) => runWorkerCli(args, { cwd: root, env: { III_HOME: join(root, "home") } });
  const file = () => readFileSync(join(root, "iii.workers.yaml"), "utf8");
  return { root, cli, file };
}

describe("a VM's writable share and a preview 1 module's dir, in one project", () => {
  it("add refuses the second of the pair, in either order and for a dir inside the other; the file keeps only the first", async () => {
    const p = await project("add");
    expect((await p.cli(["add", `dir:${p.root}/rootfs`, "--name", "vm", "-m", `${p.root}/data:/data`, "--", "true"])).code).toBe(0);
    const wasm = await p.cli(["add", `wasm:${p.root}/app.wasm`, "--name", "mod", "-m", `${p.root}/data/sub:/sub`]);
    expect(wasm.stderr).toMatch(REFUSED);
    expect(wasm.stderr).toMatch(/VM worker "vm" .* WASM worker "mod"/);
    expect(wasm.code).toBe(1);
    expect(p.file()).not.toContain("mod:");
    // The module with a dir the VM does not write is fine, and then a second VM sharing that dir writable is not.
    expect((await p.cli(["add", `wasm:${p.root}/app.wasm`, "--name", "mod", "-m", `${p.root}/other/inner:/other`])).code).toBe(0);
    const vm2 = await p.cli(["add", `dir:${p.root}/rootfs`, "--name", "vm2", "-m", `${p.root}/other:/p`, "--", "true"]);
    expect(vm2.stderr).toMatch(REFUSED);
    expect(vm2.stderr).toMatch(/VM worker "vm2" .* WASM worker "mod"/);
    expect(p.file()).not.toContain("vm2:");
    // Read-only to the guest, it can plant nothing.
    expect((await p.cli(["add", `dir:${p.root}/rootfs`, "--name", "vm2", "-m", `${p.root}/other:/p:ro`, "--", "true"])).code).toBe(0);
  }, 60_000);

  it("start refuses either of a pair written into the file by hand, before anything runs; a link to the same dir is the same dir", async () => {
    const p = await project("start");
    symlinkSync(join(p.root, "data"), join(p.root, "data-link"));
    expect((await p.cli(["add", `dir:${p.root}/rootfs`, "--name", "vm", "-m", `${p.root}/data-link:/data`, "--", "true"])).code).toBe(0);
    expect((await p.cli(["add", `wasm:${p.root}/app.wasm`, "--name", "mod", "-m", `${p.root}/other:/data`])).code).toBe(0);
    writeFileSync(join(p.root, "iii.workers.yaml"), p.file().replace(`${p.root}/other:/data`, `${p.root}/data:/data`));
    for (const name of ["mod", "vm"]) {
      const start = await p.cli(["start", name]);
      expect(start.stderr).toMatch(REFUSED);
      expect(start.code).toBe(1);
    }
    expect(JSON.parse((await p.cli(["list", "--json"])).stdout).map((r: { status: string }) => r.status)).toEqual(["stopped", "stopped"]);
  }, 60_000);
});

describe("iii worker dev and the project's preview 1 workers", () => {
  /** `iii worker dev` until it stops: RootfsNotFound means it got past the checks to the (missing) base image. */
  const dev = (proj: string, home: string) =>
    runDev(proj, { engineUrl: "ws://127.0.0.1:9", env: { III_HOME: home, III_DEV_IMAGE_NODE: `oci:${join(dir, "no-such-layout")}:latest` } }).then(
      () => expect.unreachable("the bogus base image should have stopped the run"),
      (error: { code: string; message: string }) => ({ code: error.code, message: error.message }),
    );

  it("dev (its project share is writable) is refused while a preview 1 worker mounts a dir of the project; one outside is fine", async () => {
    const p = await project("dev");
    writeFileSync(join(p.root, "package.json"), JSON.stringify({ name: "devp", scripts: { start: "node index.js" } }));
    const outside = join(dir, "dev-outside");
    mkdirSync(outside);
    expect((await p.cli(["add", `wasm:${p.root}/app.wasm`, "--name", "mod", "-m", `${outside}:/o`])).code).toBe(0);
    expect((await dev(p.root, join(p.root, "home"))).code).toBe("RootfsNotFound");
    expect((await p.cli(["add", `wasm:${p.root}/app.wasm`, "--name", "mod", "--force", "-m", `${p.root}/data:/data`])).code).toBe(0);
    const refused = await dev(p.root, join(p.root, "home"));
    expect(refused.code).toBe("InvalidOption");
    expect(refused.message).toMatch(/^VM worker "iii-dev-\w+" shares \S+ \(\/workspace\) writable and preview 1 WASM worker "mod" mounts \S+\/data \(\/data\)/);
  }, 60_000);
});

describe("assertNoDirSharedWithPreview1", () => {
  const vm = (host: string, readOnly = false): WorkerSpec => ({ image: "dir:/r", mounts: [{ host, guest: "/d", readOnly }] }) as unknown as WorkerSpec;
  const wasm = (file: string, host: string): WorkerSpec => ({ image: `wasm:${file}`, mounts: [{ host, guest: "/d", readOnly: true }] }) as unknown as WorkerSpec;

  it("a component (preview 2) may share; a module, or a file not there yet, may not; nor a VM with a VM", () => {
    const component = join(dir, "c.wasm");
    writeFileSync(component, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]));
    const module = join(dir, "m.wasm");
    writeFileSync(module, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
    expect(() => assertNoDirSharedWithPreview1("v", vm("/srv/x"), { c: wasm(component, "/srv/x") }, dir)).not.toThrow();
    expect(() => assertNoDirSharedWithPreview1("v", vm("/srv/x"), { m: wasm(module, "/srv/x/y") }, dir)).toThrow(/preview 1 WASM worker "m"/);
    expect(() => assertNoDirSharedWithPreview1("v", vm("/srv/x"), { m: wasm(join(dir, "absent.wasm"), "/srv") }, dir)).toThrow(/preview 1/);
    expect(() => assertNoDirSharedWithPreview1("v", vm("/srv/x"), { w: vm("/srv/x") }, dir)).not.toThrow();
    expect(() => assertNoDirSharedWithPreview1("v", vm("/srv/x", true), { m: wasm(module, "/srv/x") }, dir)).not.toThrow();
    expect(() => assertNoDirSharedWithPreview1("v", vm("/srv/x"), { v: wasm(module, "/srv/x") }, dir)).not.toThrow(); // itself, being replaced
    expect(() => assertNoDirSharedWithPreview1("v", vm("/srv/xy"), { m: wasm(module, "/srv/x") }, dir)).not.toThrow();
  });
});
