#!/usr/bin/env node
// iii-fs: mount a worker's view in the foreground for debugging or for running
// external filesystem test suites against it.
import { FilesystemError } from "./errors.js";
import { mountPassthrough, unmountPath } from "./mount/mount.js";
import { EXIT, parseMountArgs, usage } from "./cli-args.js";

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "unmount" || command === "umount") {
    if (rest.length !== 1) usage("expected <mountpoint>");
    await unmountPath(rest[0] as string);
    return 0;
  }
  if (command !== "mount") usage(command ? `unknown command ${command}` : "missing command");
  const handle = await mountPassthrough(parseMountArgs(rest));
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
          resolve(EXIT.UNMOUNT_FAILED);
        },
      );
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    handle.on("unmounted", (reason) => {
      if (reason.external) {
        process.stderr.write(`iii-fs: ${reason.error.message}\n`);
        resolve(EXIT.EXTERNAL_UNMOUNT);
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
