import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { cp, mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const HELLO_WORKER_DIR = resolve(here, "../../../examples/hello-worker");

/**
 * A copy of examples/hello-worker whose `node_modules/iii-sdk` links to the real iii-sdk package this
 * workspace installed (the same version the example pins), so the test runs the example's own entry
 * file against the real SDK without an `npm install` on every run.
 */
export async function prepareHelloWorker(): Promise<{ dir: string; [Symbol.asyncDispose](): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "hello-worker-"));
  await cp(join(HELLO_WORKER_DIR, "src"), join(dir, "src"), { recursive: true });
  await cp(join(HELLO_WORKER_DIR, "package.json"), join(dir, "package.json"));
  const sdkEntry = createRequire(import.meta.url).resolve("iii-sdk");
  const sdkDir = await realpath(resolve(dirname(sdkEntry), ".."));
  await mkdir(join(dir, "node_modules"));
  await symlink(sdkDir, join(dir, "node_modules", "iii-sdk"), "dir");
  return { dir, [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }) };
}

export interface RunningWorker {
  child: ChildProcess;
  output: () => string;
  waitForOutput: (pattern: RegExp, timeoutMs?: number) => Promise<void>;
  stop: () => Promise<number | null>;
}

export function runHelloWorker(dir: string, url: string): RunningWorker {
  const child = spawn(process.execPath, ["src/index.js"], {
    cwd: dir,
    env: { ...process.env, III_URL: url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let text = "";
  const listeners = new Set<() => void>();
  const append = (chunk: Buffer): void => {
    text += chunk.toString();
    for (const listener of listeners) listener();
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  const exited = new Promise<number | null>((resolveExit) => child.once("exit", (code) => resolveExit(code)));
  return {
    child,
    output: () => text,
    waitForOutput: (pattern, timeoutMs = 20_000) =>
      new Promise<void>((resolveWait, reject) => {
        const check = (): void => {
          if (!pattern.test(text)) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolveWait();
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`worker did not print ${pattern} within ${timeoutMs} ms; output:\n${text}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      }),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
