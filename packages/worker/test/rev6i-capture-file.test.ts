import { execFileSync } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PcapWriter } from "@iii/network";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openOutputFile } from "../src/host/output-file.js";
import { runWorkerCli } from "./helpers.js";

// Review rev6i: `start --capture FILE` is written by the supervisor, as root. An unprivileged local user (uid 65534
// here, through setpriv) who can write FILE's directory plants something at the name or on the way first.
const root = process.geteuid?.() === 0;
const NOBODY = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];
const asNobody = (script: string) => execFileSync("setpriv", [...NOBODY, "sh", "-c", script], { stdio: "pipe" });

let dir: string;
let shared: string;
let victimDir: string;
let victim: string;
const VICTIM_TEXT = "root:secret:line\n";

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-rev6i-capture-"));
  chmodSync(dir, 0o755);
  // A directory every user may write, sticky, as /tmp is.
  shared = join(dir, "shared");
  mkdirSync(shared);
  chmodSync(shared, 0o1777);
  // A root file the attacker cannot write, in a directory it cannot enter.
  victimDir = join(dir, "private");
  mkdirSync(victimDir, { mode: 0o700 });
  victim = join(victimDir, "victim.conf");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function resetVictim(): void {
  writeFileSync(victim, VICTIM_TEXT, { mode: 0o644 });
}

describe.skipIf(!root)("--capture FILE against another local user (rev6i)", () => {
  it("a link another user planted at the name is not followed: the host file it names is untouched", () => {
    resetVictim();
    const name = join(shared, "cap.pcap");
    asNobody(`ln -s ${victim} ${name}`);
    expect(() => openOutputFile(name, "--capture")).toThrow(/refusing to write .*cap\.pcap: it is a symbolic link/);
    expect(readFileSync(victim, "utf8")).toBe(VICTIM_TEXT);
    rmSync(name);
  });

  it("a file another user made at the name first is refused (they would read the capture)", () => {
    const name = join(shared, "pre.pcap");
    asNobody(`: > ${name}; chmod 666 ${name}`);
    expect(() => openOutputFile(name, "--capture")).toThrow(/it belongs to uid 65534/);
    expect(statSync(name).size).toBe(0);
    rmSync(name);
  });

  it("a FIFO another user made at the name is refused at once (no open that blocks)", () => {
    const name = join(shared, "fifo.pcap");
    asNobody(`mkfifo ${name}`);
    expect(() => openOutputFile(name, "--capture")).toThrow(/FIFO|not a regular file/);
    rmSync(name);
  });

  it("a directory link of another user's on the way is refused (it could point into /etc)", () => {
    resetVictim();
    const link = join(shared, "d");
    asNobody(`ln -s ${victimDir} ${link}`);
    expect(() => openOutputFile(join(link, "victim.conf"), "--capture")).toThrow(/d is a symbolic link of uid 65534/);
    expect(() => openOutputFile(join(link, "new.pcap"), "--capture")).toThrow(/symbolic link of uid 65534/);
    expect(existsSync(join(victimDir, "new.pcap"))).toBe(false);
    expect(readFileSync(victim, "utf8")).toBe(VICTIM_TEXT);
    rmSync(link);
  });

  it("a directory of another user's on the way is refused (they could swap the name under it)", () => {
    const theirs = join(shared, "theirs");
    asNobody(`mkdir -m 755 ${theirs}`);
    expect(() => openOutputFile(join(theirs, "cap.pcap"), "--capture")).toThrow(/theirs belongs to uid 65534/);
    expect(existsSync(join(theirs, "cap.pcap"))).toBe(false);
    rmSync(theirs, { recursive: true });
  });

  it("a new file is this user's, mode 0600, and the capture writer writes exactly that file through /proc/self/fd", async () => {
    const name = join(shared, "mine.pcap");
    const fd = openOutputFile(name, "--capture");
    try {
      const writer = new PcapWriter(`/proc/self/fd/${fd}`);
      writer.write(new Uint8Array(60));
      await writer.close();
    } finally {
      closeSync(fd);
    }
    const info = statSync(name);
    expect({ uid: info.uid, mode: info.mode & 0o777, size: info.size }).toEqual({ uid: 0, mode: 0o600, size: 24 + 16 + 60 });
    // An existing file of ours is emptied and used again.
    const again = openOutputFile(name, "--capture");
    closeSync(again);
    expect(statSync(name).size).toBe(0);
    rmSync(name);
  });

  it("the CLI refuses `start --capture` at a planted link with one line, before anything boots", async () => {
    resetVictim();
    const project = join(dir, "project");
    const rootfs = join(dir, "rootfs");
    mkdirSync(project, { recursive: true });
    mkdirSync(rootfs, { recursive: true });
    const env = { III_HOME: join(dir, "home"), III_QEMU_BIN: join(dir, "no-qemu"), III_LIBKRUNFW_NO_DOWNLOAD: "1" };
    const added = await runWorkerCli(["add", `dir:${rootfs}`, "--name", "w", "--", "true"], { cwd: project, env });
    expect(added.code, added.stderr).toBe(0);
    const name = join(shared, "w.pcap");
    asNobody(`ln -s ${victim} ${name}`);
    const start = await runWorkerCli(["start", "w", "--capture", name], { cwd: project, env });
    expect(start.stderr).toMatch(/^iii-worker: invalid --capture .*w\.pcap: refusing to write .*w\.pcap: it is a symbolic link \[InvalidOption\]\n$/);
    expect(start.code).toBe(1);
    expect(readFileSync(victim, "utf8")).toBe(VICTIM_TEXT);
    rmSync(name);
  }, 60_000);
});
