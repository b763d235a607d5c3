import { Command, CommanderError, Option } from "commander";
import { IiiError } from "../errors.js";
import { runDoctor } from "../doctor.js";
import { addWorker, removeWorker } from "../workers.js";
import { loadWorkersFile } from "../state/workers-file.js";
import { workersFilePath } from "../paths.js";
import { isWasmImage, type WasmSpec } from "../state/model.js";
import { runWasmCli } from "../wasm/cli.js";
import { workerStatus } from "../status.js";
import { formatTable } from "./output.js";
import { removeWorkerData, startWorker, stopWorker } from "../lifecycle.js";
import { runSupervisor } from "../supervisor/supervisor.js";
import { runFsServer } from "../supervisor/fs-server.js";
import { getWorker } from "../workers.js";
import { runExecCommand } from "./exec-command.js";
import { runDev } from "./dev-command.js";
import { parseTail, printLogs } from "./logs-command.js";
import { registerImageCommands } from "./image-commands.js";

export const DEFAULT_ENGINE_PORT = 49134;
export const DEFAULT_ENGINE_URL = `ws://localhost:${DEFAULT_ENGINE_PORT}`;

const collect = (value: string, previous: string[] = []) => [...previous, value];

function parsePullPolicy(text: string): "missing" | "always" | "never" {
  if (text !== "missing" && text !== "always" && text !== "never") {
    throw new IiiError("InvalidOption", `invalid --pull "${text}": expected missing, always or never`);
  }
  return text;
}

function parseSeconds(text: string, flag: string): number {
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(seconds)) {
    throw new IiiError("InvalidOption", `invalid ${flag} "${text}": expected a number of seconds`);
  }
  return seconds;
}

function parseMs(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) <= 0) throw new IiiError("InvalidOption", `invalid ${flag} "${text}": expected a positive whole number of milliseconds`);
  return Number(text);
}

/** The WASM tier's options of `add`, as the spec's `wasm` section (only what was given). */
function wasmOptions(opts: Record<string, unknown>): WasmSpec {
  const wasm: WasmSpec = {};
  const maxExecutionMs = parseMs(opts.maxExecutionMs as string | undefined, "--max-execution-ms");
  const cpuBudgetMs = parseMs(opts.cpuBudgetMs as string | undefined, "--cpu-budget-ms");
  if (maxExecutionMs !== undefined) wasm.maxExecutionMs = maxExecutionMs;
  if (cpuBudgetMs !== undefined) wasm.cpuBudgetMs = cpuBudgetMs;
  const network: NonNullable<WasmSpec["network"]> = {};
  if (opts.wasmInheritNetwork) network.inherit = true;
  if (opts.wasmAllowLookup) network.allowIpNameLookup = true;
  const lists = { tcpConnect: "wasmTcpConnect", tcpBind: "wasmTcpBind", udpBind: "wasmUdpBind", udpConnect: "wasmUdpConnect", udpOutgoing: "wasmUdpOutgoing" } as const;
  for (const [key, opt] of Object.entries(lists)) if (opts[opt]) network[key as keyof typeof lists] = opts[opt] as string[];
  if (Object.keys(network).length > 0) wasm.network = network;
  return wasm;
}

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
    .option("--cpus <quantity>", "CPUs, a Kubernetes quantity (500m, 2): vCPUs = ceil, and a fraction is a CPU quota")
    .option("--memory <quantity>", "memory, a Kubernetes quantity (512Mi, 1Gi, 1G)")
    .option("--pids <n>", "most processes/threads of the workload and execs together (default 1024)")
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("-p, --port <HOST:GUEST>", "publish guest port on host 127.0.0.1 (repeatable)", collect)
    .option("-m, --mount <HOST:GUEST[:ro]>", "share a host directory (repeatable)", collect)
    .option("--network <mode>", "public (default): the public internet only; none: only --allow rules, the engine and --host-port")
    .option("--allow <rule>", "network allow rule: [tcp/|udp/]CIDR|domain[:port[-port]] (repeatable)", collect)
    .option("--deny <rule>", "network deny rule, same forms as --allow (repeatable)", collect)
    .option("--host-port <port>", "host loopback port the guest may reach through its gateway (repeatable)", collect)
    .addHelpText(
      "after",
      `
Network policy (checked on the address actually dialled, after DNS):
  Always denied unless an allow rule is more specific: every address of this host's interfaces, 0.0.0.0/8,
  127.0.0.0/8 and the IANA special-purpose ranges (private, 100.64/10, link-local and metadata, TEST-NETs,
  198.18/15, multicast, 240/4, broadcast). The gateway reaches host loopback only on the engine port and
  --host-port ports.
  --network public allows other (public) addresses; --network none allows only what --allow rules name, and
  DNS then answers only names an allow rule names (others: REFUSED).
  Precedence: the most specific matching rule wins (longest prefix, a domain counting as /32 for the addresses
  it resolved; an exact domain before a wildcard); at equal specificity deny wins. So
  "--allow example.org:443 --deny 0.0.0.0/0" allows only example.org:443, and an allow rule opens a builtin
  range only when it is narrower than it (10.1.0.0/16 opens, 10.0.0.0/8 does not). Host addresses, loopback,
  link-local and multicast are never opened by a domain rule (no DNS rebinding into the host).`,
    )
    .option("--force", "replace an existing worker of the same name")
    .option("--pull <policy>", "missing (default), always or never: when to ask the registry", "missing")
    .option("--no-pull", "only record the reference; pull on the first start")
    .option("--insecure-registry <host[:port]>", "allow this registry over plain HTTP (repeatable)", collect)
    .option("--max-execution-ms <ms>", "WASM: wall-clock limit of a run (state failed, reason timeout)")
    .option("--cpu-budget-ms <ms>", "WASM: CPU time a run may use (state failed, reason cpu budget)")
    .option("--wasm-inherit-network", "WASM: use the host network stack (still under the lists and the egress policy)")
    .option("--wasm-allow-lookup", "WASM: allow name resolution (off by default)")
    .option("--wasm-tcp-connect <ADDR:PORT>", "WASM: allowed TCP connect target pattern (repeatable)", collect)
    .option("--wasm-tcp-bind <ADDR:PORT>", "WASM: allowed TCP bind pattern (repeatable)", collect)
    .option("--wasm-udp-bind <ADDR:PORT>", "WASM: allowed UDP bind pattern (repeatable)", collect)
    .option("--wasm-udp-connect <ADDR:PORT>", "WASM: allowed UDP connect pattern (repeatable)", collect)
    .option("--wasm-udp-outgoing <ADDR:PORT>", "WASM: allowed UDP send target pattern (repeatable)", collect)
    .action(async (image: string, command: string[], opts) => {
      const added = await addWorker(image, {
        ...(opts.pull === false ? { fetchImage: false } : { pull: parsePullPolicy(opts.pull) }),
        insecureRegistries: opts.insecureRegistry ?? [],
        name: opts.name,
        cpus: opts.cpus,
        memory: opts.memory,
        pids: opts.pids,
        network: opts.network,
        env: opts.env,
        ports: opts.port,
        mounts: opts.mount,
        command,
        allow: opts.allow,
        deny: opts.deny,
        hostPorts: opts.hostPort,
        force: opts.force,
        wasm: wasmOptions(opts),
      });
      for (const line of added.summary) console.error(line);
      console.error(`${added.replaced ? "replaced" : "added"} worker ${added.name} (${added.spec.image})`);
    });

  program
    .command("remove")
    .description("remove a worker from iii.workers.yaml and delete its data (writable layer, logs); refuses a running worker")
    .argument("<name>")
    .option("-f, --force", "stop the worker first if it is running")
    .option("--keep-data", "keep its managed directory (writable layer, logs)")
    .option("--timeout <seconds>", "with --force: grace period before the workload is killed", "10")
    .action(async (name: string, opts) => {
      await getWorker(name);
      await removeWorkerData(name, { force: !!opts.force, keepData: !!opts.keepData, graceMs: parseSeconds(opts.timeout, "--timeout") * 1000 });
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
          .map(async ([name, spec]) => ({ ...(await workerStatus(name)), name, image: spec.image, spec })),
      );
      if (opts.json) {
        console.log(
          JSON.stringify(
            rows.map((r) => ({
              name: r.name,
              image: r.image,
              status: r.state,
              pid: r.pid ?? null,
              lastExit: r.lastExit ?? null,
              tier: isWasmImage(r.image) ? "wasm" : "vm",
              // The user's part of the egress policy; the builtin denies (host addresses, special ranges) always apply.
              network: { mode: r.spec.network.mode ?? "public", allow: r.spec.network.allow, deny: r.spec.network.deny, hostPorts: r.spec.network.hostPorts },
            })),
            null,
            2,
          ),
        );
        return;
      }
      const statusText = (r: (typeof rows)[number]) =>
        r.state === "crashed" && r.lastExit?.crashed
          ? `crashed: ${r.lastExit.reason}`
          : r.state === "failed" && r.lastExit?.code == null
            ? `failed: ${r.lastExit?.reason}`
          : r.state === "running" || r.state === "pending" || r.lastExit?.code == null
            ? r.state
            : `${r.state} (exit ${r.lastExit.code})`;
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
        console.log(report.canRunWasm ? "verdict: WASM workers can run here" : "verdict: WASM workers cannot run here");
      }
      if (!report.canRunVm) process.exitCode = 1;
    });

  program
    .command("start")
    .description("boot a worker's microVM (detached); returns when its init reports READY")
    .argument("<name>")
    .option("--engine-url <url>", "engine URL passed to the worker as III_URL/III_ENGINE_URL", DEFAULT_ENGINE_URL)
    .option("--fresh", "discard the worker's writable layer first")
    .option("--boot-timeout <seconds>", "how long to wait for READY", "120")
    .option("--timings", "print the boot timings (supervisor phases and init steps) as JSON")
    .option("--pull <policy>", "missing (default), always or never: when to ask the registry", "missing")
    .action(async (name: string, opts) => {
      const result = await startWorker(name, {
        pull: parsePullPolicy(opts.pull),
        engineUrl: opts.engineUrl,
        fresh: !!opts.fresh,
        bootTimeoutMs: parseSeconds(opts.bootTimeout, "--boot-timeout") * 1000,
      });
      if (result.cleanedCrashed) console.error(`cleaned up after the crashed previous run of ${name}`);
      console.error(`started ${name} (${result.tier === "wasm" ? "WASM runner" : "supervisor"} pid ${result.pid}, ready in ${result.timings.ready ?? "?"} ms)`);
      if (opts.timings) console.error(`timings ${JSON.stringify(result.timings)}`);
    });

  program
    .command("stop")
    .description("stop a worker: SIGTERM to its workload, then kill after the grace period")
    .argument("<name>")
    .option("--timeout <seconds>", "grace period before the workload is killed", "10")
    .action(async (name: string, opts) => {
      await getWorker(name);
      const outcome = await stopWorker(name, { graceMs: parseSeconds(opts.timeout, "--timeout") * 1000 });
      console.error(
        outcome === "stopped" ? `stopped ${name}` : outcome === "cleaned-crashed" ? `${name} had crashed; cleaned up` : `${name} is not running`,
      );
    });

  program
    .command("logs")
    .description("print a worker's stdout/stderr (stdout.log to stdout, stderr.log to stderr)")
    .argument("<name>")
    .option("-f, --follow", "keep following, across log rotation and worker restarts")
    .option("--stdout", "only stdout")
    .option("--stderr", "only stderr")
    .option("--tail <n>", "only the last n lines of each stream")
    .action(async (name: string, opts) => {
      await printLogs(name, {
        follow: !!opts.follow,
        streams: opts.stdout && !opts.stderr ? ["stdout"] : opts.stderr && !opts.stdout ? ["stderr"] : ["stdout", "stderr"],
        tail: opts.tail === undefined ? undefined : parseTail(opts.tail),
      });
    });

  program
    .command("exec")
    .description("run a command inside a running worker; exits with the command's exit code")
    .argument("<name>")
    .argument("<command...>", "the command and its arguments (after --)")
    .option("-i, --interactive", "keep stdin open and send it to the command")
    .option("-t, --tty", "allocate a pseudo-terminal (its size follows this terminal)")
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("-w, --workdir <dir>", "working directory in the guest")
    .option("-u, --user <user>", "user (name or uid[:gid])")
    .option("--timeout <seconds>", "SIGTERM then SIGKILL after this many seconds; 0 (the default) disables")
    .action(async (name: string, command: string[], opts) => {
      const file = await loadWorkersFile(workersFilePath()).catch(() => undefined);
      const spec = file && Object.hasOwn(file.workers, name) ? file.workers[name] : undefined;
      if (spec && isWasmImage(spec.image)) {
        throw new IiiError("NotApplicable", `exec does not apply to WASM worker "${name}": it is one WebAssembly instance, with no shell or processes to run commands in`);
      }
      process.exitCode = await runExecCommand(name, command, opts);
    });

  program
    .command("dev")
    .description("run a local project in a VM, live-mounted at /workspace, with hot reload (Ctrl-C stops it)")
    .argument("<path>", "the project directory")
    .option("--name <name>", "sandbox name (default iii-dev-<project>)")
    .option("--rebuild", "re-run install even if cached")
    .option("--engine-url <url>", "engine URL passed to the worker as III_URL/III_ENGINE_URL", DEFAULT_ENGINE_URL)
    .action(async (path: string, opts) => {
      process.exitCode = await runDev(path, { name: opts.name, rebuild: !!opts.rebuild, engineUrl: opts.engineUrl });
    });

  program
    .command("start-all")
    .description("start every worker in iii.workers.yaml (used by the engine)")
    .option("--engine-url <url>", "engine URL", DEFAULT_ENGINE_URL)
    .action(async (opts) => {
      const file = await loadWorkersFile(workersFilePath());
      const names = Object.keys(file.workers).sort();
      const results = await Promise.allSettled(names.map((name) => startWorker(name, { engineUrl: opts.engineUrl })));
      results.forEach((r, i) =>
        console.error(r.status === "fulfilled" ? `started ${names[i]}` : `failed to start ${names[i]}: ${(r.reason as Error).message}`),
      );
      if (results.some((r) => r.status === "rejected")) process.exitCode = 1;
    });

  program
    .command("stop-all")
    .description("stop every running worker of iii.workers.yaml (used by the engine)")
    .option("--timeout <seconds>", "grace period", "5")
    .action(async (opts) => {
      const file = await loadWorkersFile(workersFilePath());
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      const names = Object.keys(file.workers).sort();
      const results = await Promise.allSettled(names.map((name) => stopWorker(name, { graceMs })));
      results.forEach((r, i) => {
        if (r.status === "rejected") console.error(`failed to stop ${names[i]}: ${(r.reason as Error).message}`);
        else if (r.value !== "not-running") console.error(`stopped ${names[i]}`);
      });
      if (results.some((r) => r.status === "rejected")) process.exitCode = 1;
    });

  registerImageCommands(program);

  program.addCommand(
    new Command("__vm-boot").argument("<name>").argument("<project-dir>").action(async (name: string, projectDir: string) => {
      // Everything the supervisor owned is released by now; do not let a stray handle keep it alive.
      process.exit(await runSupervisor(name, projectDir));
    }),
    { hidden: true },
  );

  program.addCommand(
    new Command("__wasm-run").argument("<config>", "the worker's WASI_CONFIG file").action(async (config: string) => {
      process.exitCode = await runWasmCli(config);
    }),
    { hidden: true },
  );

  program.addCommand(
    new Command("__fs-serve").argument("<config>").action(async (config: string) => {
      process.exitCode = await runFsServer(config);
    }),
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
