import { Command, CommanderError, Option } from "commander";
import { IiiError } from "../errors.js";
import { runDoctor } from "../doctor.js";
import { addWorker, removeWorker } from "../workers.js";
import { loadWorkersFile } from "../state/workers-file.js";
import { workersFilePath } from "../paths.js";
import { workerStatus } from "../status.js";
import { formatTable } from "./output.js";
import { registerImageCommands } from "./image-commands.js";

export const DEFAULT_ENGINE_PORT = 49134;
export const DEFAULT_ENGINE_URL = `ws://localhost:${DEFAULT_ENGINE_PORT}`;

const collect = (value: string, previous: string[] = []) => [...previous, value];

function notYet(command: string, issue: string): never {
  throw new IiiError("NotImplemented", `"${command}" is not implemented yet (${issue})`);
}

/** Everything printed for humans goes to stderr except command output meant for pipes (list, logs, --json). */
export function buildProgram(): Command {
  const program = new Command("iii-worker")
    .description("iii managed worker runtime: runs iii workers in microVM sandboxes")
    .option("--debug", "print stack traces with errors")
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`iii-worker: ${text.replace(/^error: /, "")}`) });

  program
    .command("add")
    .description("add a worker from an OCI image, a registry short name, or a local source (dir:, oci:, oci-archive:, docker-archive:)")
    .argument("<image>", "image reference, short name[@version], or local source")
    .argument("[command...]", "command and arguments (after --) overriding the image's Entrypoint/Cmd")
    .option("--name <name>", "worker name (default: the image's last path segment)")
    .option("--cpus <quantity>", "vCPUs, a Kubernetes quantity (500m, 2)")
    .option("--memory <quantity>", "memory, a Kubernetes quantity (512Mi, 1Gi, 1G)")
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("-p, --port <HOST:GUEST>", "publish guest port on host 127.0.0.1 (repeatable)", collect)
    .option("-m, --mount <HOST:GUEST[:ro]>", "share a host directory (repeatable)", collect)
    .option("--force", "replace an existing worker of the same name")
    .action(async (image: string, command: string[], opts) => {
      const added = await addWorker(image, {
        name: opts.name,
        cpus: opts.cpus,
        memory: opts.memory,
        env: opts.env,
        ports: opts.port,
        mounts: opts.mount,
        command,
        force: opts.force,
      });
      console.error(`${added.replaced ? "replaced" : "added"} worker ${added.name} (${added.spec.image})`);
    });

  program
    .command("remove")
    .description("remove a worker from iii.workers.yaml")
    .argument("<name>")
    .action(async (name: string) => {
      await removeWorker(name);
      console.error(`removed worker ${name}`);
    });

  program
    .command("list")
    .description("list workers: NAME IMAGE STATUS")
    .option("--json", "machine-readable output")
    .action(async (opts) => {
      const file = await loadWorkersFile(workersFilePath());
      const rows = await Promise.all(
        Object.entries(file.workers)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(async ([name, spec]) => ({ ...(await workerStatus(name)), name, image: spec.image })),
      );
      if (opts.json) {
        console.log(JSON.stringify(rows.map((r) => ({ name: r.name, image: r.image, status: r.state, pid: r.pid ?? null, lastExit: r.lastExit ?? null })), null, 2));
        return;
      }
      const statusText = (r: (typeof rows)[number]) =>
        r.state === "running" || r.lastExit?.code == null ? r.state : `${r.state} (exit ${r.lastExit.code})`;
      console.log(formatTable(["NAME", "IMAGE", "STATUS"], rows.map((r) => [r.name, r.image, statusText(r)])));
    });

  program
    .command("doctor")
    .description("report what this host can do: accel (KVM/TCG), QEMU, virtiofsd, FUSE, TUN, firmware, III_HOME")
    .option("--json", "machine-readable output")
    .action(async (opts) => {
      const report = await runDoctor();
      if (opts.json) {
        console.log(JSON.stringify(report, null, 2));
      } else {
        const mark = { ok: "ok  ", warn: "warn", fail: "FAIL" } as const;
        for (const c of report.checks) console.log(`${mark[c.verdict]}  ${c.name}: ${c.detail}`);
        console.log(report.canRunVm ? `verdict: VMs can run here (accel ${report.accel})` : "verdict: VMs cannot run here");
      }
      if (!report.canRunVm) process.exitCode = 1;
    });

  program
    .command("start")
    .description("boot a worker's microVM (detached); returns when its init reports READY")
    .argument("<name>")
    .option("--engine-url <url>", "engine URL passed to the worker as III_URL/III_ENGINE_URL", DEFAULT_ENGINE_URL)
    .option("--fresh", "discard the worker's writable layer first")
    .action(() => notYet("start", "first real microVM"));

  program
    .command("stop")
    .description("stop a worker: SIGTERM to its workload, then kill after the grace period")
    .argument("<name>")
    .option("--timeout <seconds>", "grace period", "10")
    .action(() => notYet("stop", "first real microVM"));

  program
    .command("logs")
    .description("print a worker's stdout/stderr")
    .argument("<name>")
    .option("-f, --follow", "keep following")
    .option("--stdout", "only stdout")
    .option("--stderr", "only stderr")
    .option("--tail <n>", "last n lines")
    .action(() => notYet("logs", "first real microVM"));

  program
    .command("exec")
    .description("run a command inside a running worker")
    .argument("<name>")
    .argument("<command...>")
    .option("-i, --interactive", "keep stdin open")
    .option("-t, --tty", "allocate a pseudo-terminal")
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("-w, --workdir <dir>", "working directory")
    .option("-u, --user <user>", "user")
    .option("--timeout <seconds>", "kill after this many seconds (0 disables)")
    .action(() => notYet("exec", "exec and attach"));

  program
    .command("dev")
    .description("run a local project in a VM, live-mounted at /workspace, with hot reload")
    .argument("<path>")
    .option("--name <name>", "sandbox name")
    .option("--rebuild", "re-run install")
    .action(() => notYet("dev", "dev mode"));

  program
    .command("start-all")
    .description("start every worker in iii.workers.yaml (used by the engine)")
    .option("--engine-url <url>", "engine URL", DEFAULT_ENGINE_URL)
    .action(() => notYet("start-all", "first real microVM"));

  program
    .command("stop-all")
    .description("stop every running worker of iii.workers.yaml (used by the engine)")
    .action(() => notYet("stop-all", "first real microVM"));

  registerImageCommands(program);

  program.addCommand(
    new Command("__vm-boot").argument("<name>").action(() => notYet("__vm-boot", "first real microVM")),
    { hidden: true },
  );

  program.addOption(new Option("--version").hideHelp());
  return program;
}

export interface CliResult {
  exitCode: number;
}

/** Runs the CLI; maps every error to one line on stderr (the stack with --debug) and an exit status. */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  const debug = argv.includes("--debug");
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === "commander.helpDisplayed" || error.code === "commander.help" || error.code === "commander.version") return 0;
      // commander already printed its message
      return 2;
    }
    if (error instanceof IiiError) {
      console.error(`iii-worker: ${error.message}${debug ? "" : ""}`);
      if (debug) console.error(error.stack);
      return error.exitCode;
    }
    console.error(`iii-worker: internal error: ${(error as Error).message ?? String(error)}`);
    if (debug) console.error((error as Error).stack);
    return 70;
  }
}
