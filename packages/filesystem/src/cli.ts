#!/usr/bin/env node
// iii-fs: mount a worker's view in the foreground for debugging or for running
// external filesystem test suites against it.
import pkg from "../package.json" with { type: "json" };
import { FilesystemError } from "./errors.js";
import { mountPassthrough, setattrShimPath, unmountPath } from "./mount/mount.js";
import { EXIT, parseMountArgs, usage, USAGE } from "./cli-args.js";

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--version" || command === "-V") {
    process.stdout.write(`${pkg.version}\n`);
    return 0;
  }
  if (command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (command === "unmount" || command === "umount") {
    if (rest.length !== 1) usage("expected <mountpoint>");
    await unmountPath(rest[0] as string);
    return 0;
  }
  if (command !== "mount") usage(command ? `unknown command ${command}` : "missing command");
  const options = parseMountArgs(rest);
  // This process serves the mount (a kill -9 of it is a kill of the server), so the
  // setattr shim must be in it from the start: re-exec once with it preloaded.
  const shim = setattrShimPath();
  const execve = (process as unknown as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (shim && execve && !(process.env.LD_PRELOAD ?? "").includes(shim)) {
    const env = { ...process.env, LD_PRELOAD: process.env.LD_PRELOAD ? `${shim}:${process.env.LD_PRELOAD}` : shim };
    execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], env);
  }
  const handle = await mountPassthrough({ ...options, isolation: "in-process" });
  process.stdout.write(`mounted ${handle.mountpoint}\n`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      handle.unmount().then(
        () => resolve(0),
        (err: unknown) => {
          process.stderr.write(`iii-fs: ${(err as Error).message}\n`);
          resolve(EXIT.UnmountFailed);
        },
      );
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    handle.on("unmounted", (reason) => {
      if (reason.external) {
        process.stderr.write(`iii-fs: ${reason.error.message}\n`);
        resolve(EXIT.ExternalUnmount);
      }
    });
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof FilesystemError) {
      process.stderr.write(`iii-fs: ${err.message}\n`);
      process.exit(EXIT[err.code]);
    }
    process.stderr.write(`iii-fs: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
