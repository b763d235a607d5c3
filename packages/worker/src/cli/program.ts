import { Command, CommanderError, Option } from "commander";
import pkg from "../../package.json" with { type: "json" };
import { describeError, IiiError, type ErrorReport } from "../errors.js";
import type { WasmSpec } from "../state/model.js";

// Start-up cost: this module loads only commander and the errors module. Every action imports what it needs
// when it runs (`await import(...)`), so `--help`, usage errors and `completion` never load the image stack,
// the VMM, @iii/filesystem (koffi + libc) or the WebSocket client.

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

/** Every name must be a worker of ./iii.workers.yaml before anything happens to any of them. */
async function requireWorkers(names: string[]): Promise<void> {
  const { getWorker } = await import("../workers.js");
  for (const name of names) await getWorker(name);
}

/**
 * Runs `action` for each worker (in parallel: each waits on its own VM), prints one line per outcome and one
 * error line per failure (`iii-worker: NAME: message [Code]`); the exit status is the first failure's. One name
 * fails as any command does.
 */
async function forEachWorker(names: string[], action: (name: string) => Promise<string>): Promise<void> {
  if (names.length === 1) {
    console.error(await action(names[0]!));
    return;
  }
  const results = await Promise.allSettled(names.map(action));
  let exitCode = 0;
  results.forEach((result, i) => {
    if (result.status === "fulfilled") {
      console.error(result.value);
      return;
    }
    const report = describeError(result.reason);
    console.error(`iii-worker: ${names[i]}: ${report.message} [${report.code}]`);
    if (exitCode === 0) exitCode = report.exitCode;
  });
  if (exitCode !== 0) process.exitCode = exitCode;
}

async function startOne(name: string, opts: { engineUrl: string; fresh?: boolean; bootTimeout: string; timings?: boolean; pull: string; capture?: string }): Promise<string> {
  const { startWorker } = await import("../lifecycle.js");
  const result = await startWorker(name, {
    ...(opts.capture !== undefined ? { capture: opts.capture } : {}),
    pull: parsePullPolicy(opts.pull),
    engineUrl: opts.engineUrl,
    fresh: !!opts.fresh,
    bootTimeoutMs: parseSeconds(opts.bootTimeout, "--boot-timeout") * 1000,
  });
  const lines = [];
  if (result.cleanedCrashed) lines.push(`cleaned up after the crashed previous run of ${name}`);
  lines.push(`started ${name} (${result.tier === "wasm" ? "WASM runner" : "supervisor"} pid ${result.pid}, ready in ${result.timings.ready ?? "?"} ms)`);
  if (opts.timings) lines.push(`timings ${JSON.stringify(result.timings)}`);
  return lines.join("\n");
}

async function stopOne(name: string, graceMs: number): Promise<string> {
  const { stopWorker } = await import("../lifecycle.js");
  const outcome = await stopWorker(name, { graceMs });
  return outcome === "stopped" ? `stopped ${name}` : outcome === "cleaned-crashed" ? `${name} had crashed; cleaned up` : `${name} is not running`;
}

/** Commands that take worker names (for completion). */
export const WORKER_NAME_COMMANDS = ["remove", "inspect", "start", "stop", "restart", "logs", "exec"];

/** Everything printed for humans goes to stderr except command output meant for pipes (list, logs, --json). */
export function buildProgram(): Command {
  const program = new Command("iii-worker")
    .description("iii managed worker runtime: runs iii workers in microVM sandboxes")
    .option("--debug", "print stack traces with errors")
    .showHelpAfterError(false)
    .exitOverride()
    // runCli prints commander's errors itself, as one line with a code
    .configureOutput({ outputError: () => {} });

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
Image names:
  A bare word (alpine, image-resize, image-resize@0.2.0) is an iii short name, resolved through the registry
  index at III_REGISTRY_URL. A reference with ':' or '/' is an OCI image; without a registry host it is Docker
  Hub's (node:22 = docker.io/library/node:22, so Docker Hub's alpine is alpine:latest). add prints which it chose.

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
    .option("--no-pull", "only record the reference, never going online; pull on the first start")
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
      // options that need no I/O are checked before anything else (the rest, in addWorker, before any network access)
      const pull = opts.pull === false ? undefined : parsePullPolicy(opts.pull);
      const wasm = wasmOptions(opts);
      const { addWorker } = await import("../workers.js");
      const added = await addWorker(image, {
        ...(pull === undefined ? { fetchImage: false } : { pull }),
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
        wasm,
      });
      console.error(`${image}: ${added.origin}`);
      for (const line of added.summary) console.error(line);
      console.error(`${added.replaced ? "replaced" : "added"} worker ${added.name} (${added.spec.image})`);
    });

  program
    .command("remove")
    .alias("rm")
    .description("remove a worker from iii.workers.yaml and delete its data (writable layer, logs); refuses a running worker")
    .argument("<name>")
    .option("-f, --force", "stop the worker first if it is running")
    .option("--keep-data", "keep its managed directory (writable layer, logs)")
    .option("--timeout <seconds>", "with --force: grace period before the workload is killed", "10")
    .action(async (name: string, opts) => {
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      const { getWorker, removeWorker } = await import("../workers.js");
      const { removeWorkerData } = await import("../lifecycle.js");
      await getWorker(name);
      await removeWorkerData(name, { force: !!opts.force, keepData: !!opts.keepData, graceMs });
      await removeWorker(name);
      console.error(`removed worker ${name}`);
    });

  program
    .command("list")
    .alias("ls")
    .description("list the workers of ./iii.workers.yaml: NAME IMAGE STATUS")
    .option("--json", "machine-readable output")
    .option("-q, --quiet", "only the names, one a line")
    .option("-a, --all", "also workers outside ./iii.workers.yaml that have run under III_HOME: dev sandboxes and other projects' workers (adds PROJECT)")
    .action(async (opts) => {
      const { loadWorkersFile } = await import("../state/workers-file.js");
      const { workersFilePath } = await import("../paths.js");
      const { isWasmImage } = await import("../state/model.js");
      const { workerStatus } = await import("../status.js");
      const { formatTable } = await import("./output.js");
      const { otherWorkers } = await import("./list-command.js");
      const file = await loadWorkersFile(workersFilePath());
      if (opts.quiet && !opts.all) {
        for (const name of Object.keys(file.workers).sort()) console.log(name);
        return;
      }
      const rows = [
        ...(await Promise.all(
          Object.entries(file.workers)
            .sort(([a], [b]) => (a < b ? -1 : 1))
            .map(async ([name, spec]) => ({ ...(await workerStatus(name)), name, image: spec.image, spec, project: process.cwd() })),
        )),
        ...(opts.all ? await otherWorkers(process.cwd()) : []),
      ];
      if (opts.quiet) {
        for (const r of rows) console.log(r.name);
        return;
      }
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
              ...(opts.all ? { project: r.project } : {}),
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
          : r.state === "failed" && r.lastExit?.startFailed
            ? `failed to start: ${r.lastExit.reason.replace(/^worker "[^"]*" failed to start: /, "")}`
          : r.lastExit?.oomKilled && r.state !== "running" && r.state !== "pending"
            ? `${r.state} (exit ${r.lastExit.code}: killed by the out-of-memory killer)`
          : r.state === "failed" && r.lastExit?.code == null
            ? `failed: ${r.lastExit?.reason}`
          : r.state === "running" || r.state === "pending" || r.lastExit?.code == null
            ? r.state
            : `${r.state} (exit ${r.lastExit.code})`;
      console.log(
        opts.all
          ? formatTable(["NAME", "IMAGE", "STATUS", "PROJECT"], rows.map((r) => [r.name, r.image, statusText(r), r.project]))
          : formatTable(["NAME", "IMAGE", "STATUS"], rows.map((r) => [r.name, r.image, statusText(r)])),
      );
    });

  program
    .command("inspect")
    .description("print workers as JSON: spec, state (status, pid, start time), last exit, paths")
    .argument("<name...>")
    .action(async (names: string[]) => {
      await requireWorkers(names);
      const { inspectWorkers } = await import("./list-command.js");
      console.log(JSON.stringify(await inspectWorkers(names), null, 2));
    });

  program
    .command("doctor")
    .description("report what this host can do: accel (KVM/TCG), QEMU, virtiofsd, FUSE, TUN, firmware, guest init, III_HOME")
    .option("--json", "machine-readable output")
    .action(async (opts) => {
      const { runDoctor } = await import("../doctor.js");
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
    .description("boot workers' microVMs (detached); returns when each init reports READY")
    .argument("<name...>")
    .option("--engine-url <url>", "engine URL passed to the worker as III_URL/III_ENGINE_URL", DEFAULT_ENGINE_URL)
    .option("--fresh", "discard the worker's writable layer first")
    .option("--boot-timeout <seconds>", "how long to wait for READY", "120")
    .option("--timings", "print the boot timings (supervisor phases and init steps) as JSON")
    .option("--pull <policy>", "missing (default), always or never: when to ask the registry", "missing")
    .option("--capture <file>", "write a pcap of the guest's network traffic (both directions) to this file")
    .action(async (names: string[], opts) => {
      parsePullPolicy(opts.pull);
      parseSeconds(opts.bootTimeout, "--boot-timeout");
      if (opts.capture !== undefined && names.length > 1) throw new IiiError("UsageError", "--capture takes one worker (each VM writes its own capture file)");
      await requireWorkers(names);
      await forEachWorker(names, (name) => startOne(name, opts));
    });

  program
    .command("stop")
    .description("stop workers: SIGTERM to the workload, then kill after the grace period")
    .argument("<name...>")
    .option("--timeout <seconds>", "grace period before the workload is killed", "10")
    .action(async (names: string[], opts) => {
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      await requireWorkers(names);
      await forEachWorker(names, (name) => stopOne(name, graceMs));
    });

  program
    .command("restart")
    .description("stop workers (if running) and start them again, with the engine URL of their last start")
    .argument("<name...>")
    .option("--timeout <seconds>", "grace period before the workload is killed", "10")
    .option("--engine-url <url>", "engine URL (default: the one the worker was last started with, else the local engine)")
    .option("--boot-timeout <seconds>", "how long to wait for READY", "120")
    .action(async (names: string[], opts) => {
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      parseSeconds(opts.bootTimeout, "--boot-timeout");
      await requireWorkers(names);
      const { lastEngineUrl } = await import("./list-command.js");
      await forEachWorker(names, async (name) => {
        const engineUrl = opts.engineUrl ?? (await lastEngineUrl(name)) ?? DEFAULT_ENGINE_URL;
        const stopped = await stopOne(name, graceMs);
        return `${stopped}\n${await startOne(name, { engineUrl, bootTimeout: opts.bootTimeout, pull: "missing" })}`;
      });
    });

  program
    .command("logs")
    .description("print a worker's stdout/stderr (stdout.log to stdout, stderr.log to stderr)")
    .argument("<name>")
    .option("-f, --follow", "keep following, across log rotation and worker restarts")
    .option("--stdout", "only stdout")
    .option("--stderr", "only stderr")
    .option("-n, --tail <n>", "only the last n lines of each stream")
    .option("--since <time>", "only lines written since: RFC 3339 (2026-12-05T10:00:00Z), Unix seconds, or a duration before now (10m, 1h30m)")
    .option("--until <time>", "only lines written before (same forms); with -f, stop following then")
    .option("-t, --timestamps", "prefix each line with the time it was written (RFC 3339, UTC)")
    .action(async (name: string, opts) => {
      const { parseTail, printLogs } = await import("./logs-command.js");
      const { parseLogTime } = await import("../log-times.js");
      const now = Date.now();
      await printLogs(name, {
        follow: !!opts.follow,
        streams: opts.stdout && !opts.stderr ? ["stdout"] : opts.stderr && !opts.stdout ? ["stderr"] : ["stdout", "stderr"],
        tail: opts.tail === undefined ? undefined : parseTail(opts.tail),
        sinceMs: opts.since === undefined ? undefined : parseLogTime(opts.since, "--since", now),
        untilMs: opts.until === undefined ? undefined : parseLogTime(opts.until, "--until", now),
        timestamps: !!opts.timestamps,
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
      // A running VM's record says what it is; the state file (YAML) is read only when there is no VM record
      // (exec then fails anyway) or a WASM runner's, keeping it off the path of the common case.
      const { readVmRecord } = await import("../state/vm-record.js");
      const record = await readVmRecord(name);
      let wasm = record?.vmm === "wasm";
      if (!record) {
        const { loadWorkersFile } = await import("../state/workers-file.js");
        const { workersFilePath } = await import("../paths.js");
        const { isWasmImage } = await import("../state/model.js");
        const file = await loadWorkersFile(workersFilePath()).catch(() => undefined);
        const spec = file && Object.hasOwn(file.workers, name) ? file.workers[name] : undefined;
        wasm = spec !== undefined && isWasmImage(spec.image);
      }
      if (wasm) {
        throw new IiiError("NotApplicable", `exec does not apply to WASM worker "${name}": it is one WebAssembly instance, with no shell or processes to run commands in`);
      }
      const { runExecCommand } = await import("./exec-command.js");
      process.exitCode = await runExecCommand(name, command, opts);
    });

  program
    .command("dev")
    .description("run a local project in a VM, live-mounted at /workspace, with hot reload (Ctrl-C stops it)")
    .argument("<path>", "the project directory")
    .option("--name <name>", "sandbox name (default iii-dev-<project>)")
    .option("--rebuild", "re-run install even if cached")
    .option("--engine-url <url>", "engine URL passed to the worker as III_URL/III_ENGINE_URL", DEFAULT_ENGINE_URL)
    .option("--capture <file>", "write a pcap of the sandbox's network traffic (both directions) to this file")
    .action(async (path: string, opts) => {
      const { runDev } = await import("./dev-command.js");
      process.exitCode = await runDev(path, { name: opts.name, rebuild: !!opts.rebuild, engineUrl: opts.engineUrl, ...(opts.capture !== undefined ? { capture: opts.capture as string } : {}) });
    });

  program
    .command("start-all")
    .description("start every worker in iii.workers.yaml (used by the engine)")
    .option("--engine-url <url>", "engine URL", DEFAULT_ENGINE_URL)
    .action(async (opts) => {
      const { loadWorkersFile } = await import("../state/workers-file.js");
      const { workersFilePath } = await import("../paths.js");
      const { startWorker } = await import("../lifecycle.js");
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
      const graceMs = parseSeconds(opts.timeout, "--timeout") * 1000;
      const { loadWorkersFile } = await import("../state/workers-file.js");
      const { workersFilePath } = await import("../paths.js");
      const { stopWorker } = await import("../lifecycle.js");
      const file = await loadWorkersFile(workersFilePath());
      const names = Object.keys(file.workers).sort();
      const results = await Promise.allSettled(names.map((name) => stopWorker(name, { graceMs })));
      results.forEach((r, i) => {
        if (r.status === "rejected") console.error(`failed to stop ${names[i]}: ${(r.reason as Error).message}`);
        else if (r.value !== "not-running") console.error(`stopped ${names[i]}`);
      });
      if (results.some((r) => r.status === "rejected")) process.exitCode = 1;
    });

  registerImageCommands(program);

  program
    .command("completion")
    .description("print a shell completion script: bash (source <(iii-worker completion bash)) or zsh")
    .argument("<shell>", "bash or zsh")
    .action(async (shell: string) => {
      const { completionScript } = await import("./completion.js");
      process.stdout.write(completionScript(shell, program));
    });

  program.addCommand(
    new Command("__vm-boot").argument("<name>").argument("<project-dir>").action(async (name: string, projectDir: string) => {
      const { runSupervisor } = await import("../supervisor/supervisor.js");
      // Everything the supervisor owned is released by now; do not let a stray handle keep it alive.
      process.exit(await runSupervisor(name, projectDir));
    }),
    { hidden: true },
  );

  program.addCommand(
    new Command("__wasm-run").argument("<config>", "the worker's WASI_CONFIG file").action(async (config: string) => {
      const { runWasmCli } = await import("../wasm/cli.js");
      process.exitCode = await runWasmCli(config);
    }),
    { hidden: true },
  );

  program.version(pkg.version, "-V, --version", "print the version");
  return program;
}

/** `images`, `prune`, `login`: the image cache and registry credentials (their code loads when they run). */
export function registerImageCommands(program: Command): void {
  program
    .command("images")
    .description("list cached images, their size and the workers using them")
    .option("--json", "machine-readable output")
    .action(async (opts: { json?: boolean }) => (await import("./image-commands.js")).imagesCommand(opts));

  program
    .command("prune")
    .description("remove cached images no worker in ./iii.workers.yaml references")
    .option("--dry-run", "list what would be removed")
    .action(async (opts: { dryRun?: boolean }) => (await import("./image-commands.js")).pruneCommand(opts));

  program
    .command("login")
    .description("store registry credentials (checked against the registry) under III_HOME/auth.json, mode 0600")
    .argument("<registry>", "registry host[:port]")
    .option("-u, --username <user>")
    .option("--password-stdin", "read the password from stdin")
    .option("--insecure", "the registry speaks plain HTTP")
    .option("--no-verify", "store without checking the credentials")
    .action(async (registry: string, opts: { username?: string; passwordStdin?: boolean; insecure?: boolean; verify: boolean }) =>
      (await import("./image-commands.js")).loginCommand(registry, opts),
    );
}

export interface CliResult {
  exitCode: number;
}

/** `--json` before any `--`: errors go out as JSON too. */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

/**
 * Prints an error as exactly one line `iii-worker: <message> [<Code>]` on stderr, or with `--json` as
 * `{"error":{"code","message"}}` on stdout (where the command's JSON would have gone; stderr stays empty);
 * `--debug` adds the stack on stderr.
 */
function reportError(report: ErrorReport, json: boolean, stack: string | undefined): void {
  if (json) process.stdout.write(`${JSON.stringify({ error: { code: report.code, message: report.message } })}\n`);
  else process.stderr.write(`iii-worker: ${report.message} [${report.code}]\n`);
  if (stack) process.stderr.write(`${stack}\n`);
}

/** Runs the CLI; maps every error to one line (the stack with --debug) and an exit status. */
export async function runCli(argv: string[]): Promise<number> {
  const program = buildProgram();
  const debug = argv.includes("--debug");
  const json = wantsJson(argv);
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === "commander.helpDisplayed" || error.code === "commander.help" || error.code === "commander.version") return 0;
      // unknown option/command, missing argument, …: usage errors (exit 2)
      const message = error.message.replace(/^error: /, "");
      reportError({ code: "UsageError", message: message.replace(/\s*\n\s*/g, " ").trim(), exitCode: 2 }, json, debug ? error.stack : undefined);
      return 2;
    }
    const report = describeError(error);
    reportError(report, json, debug ? (error as Error)?.stack : undefined);
    return report.exitCode;
  }
}
