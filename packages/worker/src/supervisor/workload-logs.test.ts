import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostControl, protocol } from "@iii/init";
import { afterEach, describe, expect, it } from "vitest";
import { heldUnder } from "../../test/held-files.js";
import { unixSocketPair } from "../../test/stand-ins.js";
import { RotatingLog } from "../util/rotating-log.js";
import { logWorkloadOutput } from "./supervisor.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});


function sizeOf(path: string): number {
  return statSync(path, { throwIfNoEntry: false })?.size ?? 0;
}

describe("the workload's stdout/stderr logs (supervisor wiring, real HostControl)", () => {
  it("a guest printing 256 MiB leaves at most twice the limit on disk, nothing hidden, fds constant", async () => {
    const dir = mkdtempSync(join(tmpdir(), "iii-workload-logs-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const logs = join(dir, "logs");
    const [hostSock, guestSock] = await unixSocketPair(join(dir, "control.sock"), (close) => cleanups.push(close));
    const limit = 4 * 1024 * 1024;
    mkdirSync(logs);
    const stdoutLog = new RotatingLog(join(logs, "stdout.log"), limit);
    const stderrLog = new RotatingLog(join(logs, "stderr.log"), limit);
    const hc = HostControl.attach(hostSock);
    hc.on("error", () => {});
    logWorkloadOutput(hc, { stdout: stdoutLog, stderr: stderrLog });

    // The guest's init: the workload's output on stream 0, as fast as the credit the host returns allows.
    const guest = new protocol.ControlChannel(guestSock);
    const total = 256 * 1024 * 1024;
    const block = Buffer.alloc(1024 * 1024, 0x42);
    let maxFds = 0;
    let maxHidden = 0;
    let maxOnDisk = 0;
    let maxQueued = 0;
    const sample = () => {
      const held = heldUnder(logs);
      maxFds = Math.max(maxFds, held.fds);
      maxHidden = Math.max(maxHidden, held.deletedBytes);
      const onDisk = ["stdout.log", "stdout.log.1", "stdout.log.times", "stdout.log.times.1"].reduce((s, f) => s + sizeOf(join(logs, f)), 0);
      maxOnDisk = Math.max(maxOnDisk, onDisk + held.deletedBytes);
      maxQueued = Math.max(maxQueued, stdoutLog.queuedBytes + stderrLog.queuedBytes);
    };
    const timer = setInterval(sample, 20);
    const t0 = Date.now();
    for (let sent = 0; sent < total; sent += block.length) {
      await guest.sendData(0, sent % (64 * 1024 * 1024) === 0 ? "STDERR" : "STDOUT", block);
      sample();
    }
    // Everything sent has reached a file once the last credit came back, or soon after.
    for (let i = 0; i < 200 && sizeOf(join(logs, "stdout.log")) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    clearInterval(timer);
    sample();
    const elapsedMs = Date.now() - t0;

    // The log and its times file per stream at every sample; no bytes in files removed while open.
    expect(maxFds).toBeLessThanOrEqual(4);
    expect(maxHidden).toBe(0);
    // Back-pressure: the source is paused while its write settles, so at most one data frame waits per log.
    expect(maxQueued).toBeLessThanOrEqual(2 * 64 * 1024);
    // Twice the limit (the times files are charged to it) plus one chunk of slack.
    expect(maxOnDisk).toBeLessThanOrEqual(2 * limit + 64 * 1024);
    expect(elapsedMs).toBeLessThan(15_000);
    // What was kept is the output's tail, rotated: more than one file's worth, less than two.
    const kept = sizeOf(join(logs, "stdout.log")) + sizeOf(join(logs, "stdout.log.1"));
    expect(kept).toBeGreaterThan(limit / 2);
    expect(sizeOf(join(logs, "stderr.log")) + sizeOf(join(logs, "stderr.log.1"))).toBeGreaterThan(0);

    hc.close();
    await stdoutLog.close();
    await stderrLog.close();
    expect(heldUnder(logs).fds).toBe(0);
  });
});
