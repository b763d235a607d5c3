import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";
import { tarBytes, writeLayout } from "../images/fixtures/oci-writer.js";

const CLI = join(import.meta.dirname, "../../dist/cli.js");
const dir = mkdtempSync(join(tmpdir(), "iii-start-remove-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * `remove` while `start` of the same worker is still unpacking its image. No VM boots: QEMU is named missing, so the
 * start fails right after the unpack (firmware downloads are off). Before the fix the remove saw a stopped worker and
 * deleted it and its state, and the start went on (on a real host: booted a VM that `list` and `stop` no longer see).
 */
describe("start and remove of one worker at once", () => {
  it("remove refuses while a start of the worker runs, and the worker stays in iii.workers.yaml", async () => {
    const layout = join(dir, "layout");
    await writeLayout(layout, "1", {
      layers: [
        { tar: await tarBytes([{ name: "bin/", type: "directory" }]), compression: "none" },
        { tar: await tarBytes([{ name: "filler.bin", content: Buffer.alloc(160 * 1024 * 1024, 0x61) }]), compression: "none" },
      ],
    });
    const env = { III_HOME: join(dir, "home"), III_QEMU_BIN: join(dir, "no-qemu"), III_LIBKRUNFW_NO_DOWNLOAD: "1" };
    const added = await runWorkerCli(["add", `oci:${layout}:1`, "--name", "w", "--no-pull"], { cwd: dir, env });
    expect(added.code, added.stderr).toBe(0);

    const start = spawn(process.execPath, [CLI, "start", "w"], { cwd: dir, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "pipe"] });
    let startErr = "";
    start.stderr.on("data", (d) => (startErr += d));
    const started = new Promise<number | null>((resolve) => start.on("close", resolve));
    // Wait until the unpack is under way (its staging directory exists).
    const tmp = join(dir, "home", "images", "tmp");
    const deadline = Date.now() + 20_000;
    while (!(existsSync(tmp) && readdirSync(tmp).length > 0)) {
      if (Date.now() > deadline) throw new Error(`the start never began unpacking: ${startErr}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const removed = await runWorkerCli(["remove", "w"], { cwd: dir, env });
    const startCode = await started;
    expect(startErr).toMatch(/QemuNotFound|not an executable/);
    expect(startCode).toBe(1);
    expect(removed.stderr).toMatch(/^iii-worker: worker "w" is being started or removed by another command; remove it again once that one is done \[WorkerRunning\]\n$/);
    expect(removed.code).toBe(1);
    expect(readFileSync(join(dir, "iii.workers.yaml"), "utf8")).toMatch(/^ {2}w:$/m);
    // Once the start is over, remove works.
    const again = await runWorkerCli(["remove", "w"], { cwd: dir, env });
    expect(again.code, again.stderr).toBe(0);
  }, 60_000);
});
