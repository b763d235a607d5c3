// The supervisor process of one VM (`node dist/supervisor.js <name> <project-dir>`), spawned by `start`
// (launch/spawn.ts) in its own session: its own entry, so it loads neither the CLI nor commander.
import { enableCompileCache } from "node:module";
import { MountServer } from "@iii/filesystem/client";

enableCompileCache?.();

const [name, projectDir] = process.argv.slice(2);
if (!name || !projectDir) {
  process.stderr.write("usage: supervisor.js <name> <project-dir> (spawned by iii-worker start)\n");
  process.exit(2);
}
// The root filesystem's FUSE server starts first: its Node start-up and module loading overlap the
// supervisor's own (the mount phase hands it the mount; an unused one is ended by the run's cleanup).
const rootServer = MountServer.start();
const { runSupervisor } = await import("./supervisor.js");
// Everything the supervisor owned is released by now; do not let a stray handle keep it alive.
process.exit(await runSupervisor(name, projectDir, process.env, undefined, rootServer));
