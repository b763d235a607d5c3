import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { mountPassthrough, setattrShimPath, type MountOptions } from "@iii/filesystem";
import { IiiError } from "../errors.js";
import { processStartTime } from "../host/process-identity.js";

const CLI_ENTRY = fileURLToPath(new URL("./cli.js", import.meta.url));

/**
 * `iii-worker __fs-serve <config.json>`: serves one FUSE mount in its own process. The supervisor must
 * never serve the FUSE mount on its own event loop: any synchronous filesystem call it made on the
 * mountpoint (a stat of the share directory, say) would wait for a reply only that same loop can give,
 * and hang in uninterruptible sleep. Ends, unmounting, on SIGTERM/SIGINT or when its parent's stdin pipe
 * closes (the supervisor died).
 */
export async function runFsServer(configPath: string): Promise<number> {
  const options = JSON.parse(await readFile(configPath, "utf8")) as MountOptions;
  // This process is already the server process: serve in it (its parent started it with the setattr shim).
  const mount = await mountPassthrough({ ...options, isolation: "in-process" });
  let ending = false;
  const end = async (why: string) => {
    if (ending) return;
    ending = true;
    process.stderr.write(`iii-fs: unmounting ${options.mountpoint} (${why})\n`);
    await mount.unmount().catch((error: Error) => process.stderr.write(`iii-fs: unmount failed: ${error.message}\n`));
    process.exit(0);
  };
  process.on("SIGTERM", () => void end("SIGTERM"));
  process.on("SIGINT", () => void end("SIGINT"));
  process.stdin.on("end", () => void end("supervisor gone"));
  process.stdin.on("error", () => void end("supervisor gone"));
  process.stdin.resume();
  process.stdout.write("ready\n");
  return new Promise<number>(() => {});
}

export interface FsServerHandle {
  pid: number;
  startTime: number;
  /** Calls `listener` once if the server ends before stop() was asked for (killed, crashed). */
  onUnexpectedExit(listener: (how: string) => void): void;
  stop(): Promise<void>;
}

/** Starts `__fs-serve` and resolves once the mount is up; rejects with its stderr when it fails. */
export async function startFsServer(configPath: string, logFd: number, what = "the root filesystem", timeoutMs = 30_000): Promise<FsServerHandle> {
  // libfuse 2 drops mtime-only setattr; @iii/filesystem's shim, preloaded into the serving process, restores it.
  const shim = setattrShimPath();
  const env = shim ? { ...process.env, LD_PRELOAD: [shim, process.env.LD_PRELOAD].filter(Boolean).join(":") } : process.env;
  const child: ChildProcess = spawn(process.execPath, [CLI_ENTRY, "__fs-serve", configPath], { stdio: ["pipe", "pipe", logFd], env });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const ready = new Promise<boolean>((resolve) => {
    let text = "";
    child.stdout!.on("data", (d: Buffer) => {
      text += d.toString("utf8");
      if (text.includes("ready\n")) resolve(true);
    });
    child.stdout!.on("end", () => resolve(false));
  });
  const timer = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), timeoutMs).unref());
  const outcome = await Promise.race([ready, timer]);
  if (outcome !== true) {
    child.kill("SIGKILL");
    throw new IiiError("VmBootFailed", `the FUSE mount of ${what} did not come up${outcome === "timeout" ? ` within ${timeoutMs / 1000} s` : ` (exit ${await exited})`}; see logs/supervisor.log`);
  }
  let stopping = false;
  return {
    pid: child.pid!,
    startTime: processStartTime(child.pid!) ?? 0,
    onUnexpectedExit: (listener) => {
      child.once("exit", (code, signal) => {
        if (!stopping) listener(signal ? `died of ${signal}` : `exited with code ${code}`);
      });
    },
    stop: async () => {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))]);
      if (!done) child.kill("SIGKILL");
    },
  };
}
