import { execFile } from "node:child_process";
import fs from "node:fs";
import { findMount, parseMountInfo, type MountInfoEntry } from "../core/mountinfo.js";

// Light on purpose (no FUSE binding): the mount client and the CLI's unmount load it without the server's code.

/** This process's mount table (/proc/self/mountinfo). */
export function readMountTable(): MountInfoEntry[] {
  return parseMountInfo(fs.readFileSync("/proc/self/mountinfo", "utf8"));
}

/** Runs a mount tool (bounded at 10 s); never throws, says its exit code and stderr. */
export const runTool = (cmd: string, args: string[]): Promise<{ code: number; stderr: string }> =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, _stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stderr: String(stderr).trim() || (err ? err.message : "") });
    });
  });

/**
 * Detaches the mount at `mountpoint` without waiting for its users (`fusermount -uz`, then `umount -l` if that
 * left it), rechecking the mount table after each. Only the mount found there first is acted on: `umount -l`
 * runs only while that mount is still the top one at the path, never on one it uncovered. `found` says whether
 * anything was mounted there, `gone` whether it left; `detail` what the tools said.
 */
export async function detachMount(mountpoint: string): Promise<{ found: boolean; gone: boolean; detail: string }> {
  const target = findMount(readMountTable(), mountpoint);
  if (!target) return { found: false, gone: true, detail: "" };
  const present = () => readMountTable().some((m) => m.mountId === target.mountId);
  const fusermount = await runTool("fusermount", ["-uz", mountpoint]);
  if (!present()) return { found: true, gone: true, detail: "" };
  if (findMount(readMountTable(), mountpoint)?.mountId !== target.mountId) {
    return { found: true, gone: false, detail: `fusermount -uz: ${fusermount.stderr || `exit ${fusermount.code}`}; another mount now covers it` };
  }
  const umount = await runTool("umount", ["-l", mountpoint]);
  if (!present()) return { found: true, gone: true, detail: "" };
  return { found: true, gone: false, detail: `fusermount -uz: ${fusermount.stderr || `exit ${fusermount.code}`}; umount -l: ${umount.stderr || `exit ${umount.code}`}` };
}
