import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "./helpers.js";
import { exitWith, wat } from "./wasm/wat.js";

// Review rev6i: root adds a module that lives in a directory other users can write (not sticky); uid 65534 replaces
// it; root's next `start` ran uid 65534's module with the worker's mounts and network.
const root = process.geteuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), "iii-rev6i-wasm-owner-"));
chmodSync(dir, 0o755);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!root)("a WASM module another local user can replace (rev6i)", () => {
  it("is refused at start, naming why; the same module where only root writes runs", async () => {
    const project = join(dir, "project");
    const pub = join(dir, "pub");
    mkdirSync(project);
    mkdirSync(pub);
    chmodSync(pub, 0o777);
    writeFileSync(join(dir, "ours.wasm"), await wat(exitWith(7, "ours\n")));
    writeFileSync(join(dir, "theirs.wasm"), await wat(exitWith(42, "theirs\n")), { mode: 0o644 });
    copyFileSync(join(dir, "ours.wasm"), join(pub, "app.wasm"));
    const env = { III_HOME: join(dir, "home") };
    const cli = (args: string[]) => runWorkerCli(args, { cwd: project, env });
    expect((await cli(["add", join(pub, "app.wasm"), "--name", "app"])).code).toBe(0);
    // Refused while still root's own file: the directory lets anyone swap it between the check and the read.
    const before = await cli(["start", "app"]);
    expect(before.stderr).toMatch(/^iii-worker: refusing to run .*app\.wasm: .*pub is writable by other users and not sticky \(mode 0777\).*\[WasmInvalid\]\n$/);
    execFileSync("setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", "sh", "-c", `cp ${join(dir, "theirs.wasm")} ${pub}/.x && mv -f ${pub}/.x ${pub}/app.wasm`]);
    const start = await cli(["start", "app"]);
    expect(start.stderr).toMatch(/^iii-worker: refusing to run .*app\.wasm: .*app\.wasm belongs to uid 65534, so another user could replace it.*\[WasmInvalid\]\n$/);
    expect(start.code).toBe(1);
    expect((await cli(["logs", "app"])).stdout).not.toContain("theirs");
    // Where only root writes, it runs.
    expect((await cli(["add", join(dir, "ours.wasm"), "--name", "ok"])).code).toBe(0);
    expect((await cli(["start", "ok"])).code).toBe(0);
  }, 60_000);
});
