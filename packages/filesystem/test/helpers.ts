import { execFile, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseMountInfo } from "../src/core/mountinfo.js";
import { fuseAvailable } from "../src/index.js";

export const fuse = fuseAvailable();
if (!fuse.ok) console.log(`[@iii/filesystem] skipping FUSE tests: ${fuse.reason}`);

/** A fresh temp dir whose name carries the pid (other engineers test on this machine too). */
export function tempDir(label: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `iii-fs-${label}-${process.pid}-`));
}

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a bash script in a child process that cd's into `cwd` itself. Never spawn with
 * `cwd` inside a mount served by this process: libuv's vfork child would block in
 * chdir() on a FUSE request that only the (suspended) parent can answer.
 */
export function sh(script: string, cwd: string, timeoutMs = 60_000): Promise<ShResult> {
  return new Promise((resolve) => {
    const wrapped = `cd -- "$III_TEST_DIR" || exit 99\n${script}`;
    const env = { ...process.env, III_TEST_DIR: cwd };
    execFile("bash", ["-c", wrapped], { cwd: "/", env, timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export async function shOk(script: string, cwd: string, timeoutMs?: number): Promise<string> {
  const r = await sh(script, cwd, timeoutMs);
  if (r.code !== 0) throw new Error(`script failed (${r.code}) in ${cwd}:\n${script}\n--- stderr:\n${r.stderr}\n--- stdout:\n${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

/**
 * A comparable description of a tree: type, mode, owner, size, link target,
 * content hash, xattrs, and mtime (to the millisecond: fuse-native carries times in
 * ms) when it was set explicitly (before 2020), else "recent".
 */
export async function snapshot(dir: string, opts: { skip?: string[]; ignoreTimesUnder?: string[] } = {}): Promise<string[]> {
  const prune = (opts.skip ?? []).map((s) => `-path ./${s} -prune -o`).join(" ");
  const out = await shOk(
    `find . ${prune} -printf '%y %m %u %g %s %T@ %p -> %l\\n' | LC_ALL=C sort`,
    dir,
  );
  const lines: string[] = [];
  for (const line of out.split("\n")) {
    if (!line) continue;
    const m = /^(\S) (\S+) (\S+) (\S+) (\d+) (\S+) (.*) -> (.*)$/.exec(line);
    if (!m) throw new Error(`bad find line ${line}`);
    const [, type, mode, uid, gid, size, mtime, p, target] = m as unknown as string[];
    const t = Number(mtime);
    const ignoreTime = (opts.ignoreTimesUnder ?? []).some((d) => (p ?? "").startsWith(`./${d}/`));
    const when = ignoreTime ? "-" : t < 1_577_836_800 ? (Math.floor(t * 1000) / 1000).toFixed(3) : "recent";
    // Directory sizes depend on ext4 history, not on the filesystem under test.
    lines.push(`${type} ${mode} ${uid}:${gid} ${type === "d" ? "-" : size} ${when} ${p}${type === "l" ? ` -> ${target}` : ""}`);
  }
  const sums = await shOk(`find . ${prune} -type f -size -2M -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum`, dir);
  const xattrs = await shOk(`getfattr -R -P -d -e hex -m - . 2>/dev/null | grep -v '^security.selinux' || true`, dir);
  lines.sort();
  return [...lines, "--- md5", ...sums.split("\n").filter(Boolean), "--- xattrs", ...xattrs.split("\n").filter(Boolean)];
}

/**
 * Removes a test's temp tree. A mount left below it (a failed unmount) is detached first, deepest first: a
 * recursive remove would otherwise walk into it, and a FUSE mount nobody answers blocks that walk for good.
 */
export function rmrf(p: string): void {
  const top = path.resolve(p);
  const below = parseMountInfo(fs.readFileSync("/proc/self/mountinfo", "utf8"))
    .map((m) => m.mountPoint)
    .filter((m) => m === top || m.startsWith(`${top}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of below) spawnSync("umount", ["-l", m], { stdio: "ignore", timeout: 10_000 });
  fs.rmSync(p, { recursive: true, force: true });
}
