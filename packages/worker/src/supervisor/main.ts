// The supervisor process of one VM (`node dist/supervisor.js <name> <project-dir>`), spawned by `start`
// (launch/spawn.ts) in its own session: its own entry, so it loads neither the CLI nor commander.
import { MountServer } from "@iii/filesystem/client";

// No enableCompileCache() here: without a directory it means $TMPDIR/node-compile-cache, where another local user
// can plant code this root process would run. Node turns the cache on by itself when iii-worker's CLI approved a
// private one (NODE_COMPILE_CACHE in the environment it passes down: host/compile-cache.ts).

const [name, projectDir] = process.argv.slice(2);
if (!name || !projectDir) {
  process.stderr.write("usage: supervisor.js <name> <project-dir> (spawned by iii-worker start)\n");
  process.exit(2);
}
// Spawned in standby (launch/spawn.ts spawnStandbySupervisor) while `start` still runs its checks.
const standby = process.env.III_SUPERVISOR_STANDBY === "1";
delete process.env.III_SUPERVISOR_STANDBY;
// The root filesystem's FUSE server starts first: its Node start-up and module loading overlap the
// supervisor's own (the mount phase hands it the mount; an unused one is ended by the run's cleanup).
const rootServer = MountServer.start();
const { runSupervisor } = await import("./supervisor.js");
let standbyMs: number | undefined;
if (standby) {
  standbyMs = Math.round(performance.now());
  if (!(await awaitGo())) {
    // `start` failed its checks (or died): nothing was created; end the FUSE server and go.
    await rootServer.dispose();
    process.exit(0);
  }
}
// Everything the supervisor owned is released by now; do not let a stray handle keep it alive.
process.exit(await runSupervisor(name, projectDir, process.env, undefined, rootServer, standbyMs));

/** True once `go` arrives on stdin; false at its end without one. */
function awaitGo(): Promise<boolean> {
  return new Promise((resolve) => {
    let text = "";
    const stdin = process.stdin;
    const done = (go: boolean) => {
      stdin.removeAllListeners("data");
      stdin.destroy();
      resolve(go);
    };
    stdin.setEncoding("utf8");
    stdin.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\n")) done(text.split("\n")[0] === "go");
    });
    stdin.once("end", () => done(false));
    stdin.once("error", () => done(false));
  });
}
