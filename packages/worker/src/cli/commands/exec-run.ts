import { join } from "node:path";
import { IiiError } from "../../errors.js";
import { SupervisorClient } from "../../api/client.js";
import type { ExecCreateRequest } from "../../api/attach-protocol.js";
import { parseEnvAssignment } from "../../state/model.js";
import { workerStatus, type WorkerStatus } from "../../status.js";
import { findStartingSupervisor } from "../../host/starting-supervisor.js";
import { isSameProcessAlive } from "../../host/process-identity.js";
import { managedDir } from "../../paths.js";
import { readJson, type VmRecord } from "../../state/vm-record.js";
import { getWorker } from "../../workers.js";
import { reservedEnvKeys, reservedEnvMessage } from "../../launch/spec.js";
import { terminalSafeLine } from "../../util/terminal-safe.js";

/** What a shell records for a writer whose reader went away (128 + SIGPIPE). */
export const EXIT_PIPE_CLOSED = 141;

export interface ExecCommandOptions {
  interactive?: boolean;
  tty?: boolean;
  env?: string[];
  workdir?: string;
  user?: string;
  timeout?: string;
}

/** How long an exec waits for a worker that is still booting (TCG boots take seconds; a stuck boot is a failure). */
const EXEC_BOOT_WAIT_MS = 60_000;

/**
 * A worker that is not running yet may be starting: its supervisor runs but has not recorded the run (vm.json)
 * yet. Waits (until `deadline`) for the run to be recorded or that supervisor to end; else `status` as is. The
 * supervisor of a run that has ended (vm.json still names it while it releases its resources) is not waited for.
 */
async function awaitStartingRun(name: string, status: WorkerStatus, deadline: number): Promise<WorkerStatus> {
  const dir = managedDir(name);
  const supervisor = findStartingSupervisor(name, dir);
  if (!supervisor) return status;
  const recorded = await readJson<VmRecord>(join(dir, "vm.json"));
  if (recorded && recorded.pid === supervisor.pid && recorded.startTime === supervisor.startTime) return status;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await workerStatus(name);
    if (now.state === "running") return now;
    // It ended without recording a run (its checks failed, or it lost a race for the lock): say how things stand.
    if (!isSameProcessAlive(supervisor)) {
      const ended = await workerStatus(name);
      if (ended.state !== "running" && ended.lastExit) throw new IiiError("VmNotRunning", `worker "${name}" is not running (${ended.state}: ${ended.lastExit.reason})`);
      return ended;
    }
    if (Date.now() >= deadline) throw new IiiError("VmBooting", `worker "${name}" is still starting after ${EXEC_BOOT_WAIT_MS / 1000} s (supervisor pid ${supervisor.pid})`);
  }
}

/** `iii worker exec`: runs a command in a running worker; resolves with the command's exit status. */
export async function runExecCommand(name: string, argv: string[], options: ExecCommandOptions): Promise<number> {
  const env = Object.fromEntries((options.env ?? []).map(parseEnvAssignment));
  const reserved = reservedEnvKeys(env);
  if (reserved.length > 0) throw new IiiError("InvalidOption", `invalid --env: ${reservedEnvMessage(reserved)}`);
  // Checked before the worker's state, as --env is: a bad value was named only once the worker ran.
  let timeoutMs = 0;
  if (options.timeout !== undefined) {
    const seconds = Number(options.timeout);
    if (!/^\d+(\.\d+)?$/.test(options.timeout)) throw new IiiError("InvalidOption", `invalid --timeout "${options.timeout}": expected seconds (0 disables)`);
    timeoutMs = Math.round(seconds * 1000);
  }
  // One wait for a worker still starting or booting, whichever part of it the exec lands in.
  const bootDeadline = Date.now() + EXEC_BOOT_WAIT_MS;
  let status = await workerStatus(name);
  if (status.state !== "running") status = await awaitStartingRun(name, status, bootDeadline);
  if (status.state !== "running") {
    await getWorker(name); // names an unknown worker as such
    throw new IiiError("VmNotRunning", `worker "${name}" is not running (${status.state})`);
  }
  if (argv.length === 0) throw new IiiError("UsageError", "exec needs a command after --");
  const tty = options.tty === true;
  const request: ExecCreateRequest = {
    argv,
    env,
    tty,
    // Without -i the command reads end-of-file at once instead of waiting for input nobody sends. With -t
    // but no -i its terminal gets no input at all, as with docker exec -t: nothing is typed into it.
    ...(options.interactive || tty ? {} : { stdin: false }),
    timeoutMs,
    onDisconnect: "kill",
  };
  if (options.workdir) request.cwd = options.workdir;
  if (options.user) request.user = options.user;
  if (tty) {
    request.rows = process.stdout.rows || 24;
    request.cols = process.stdout.columns || 80;
  }
  const client = SupervisorClient.forWorker(name);
  const stdin = process.stdin;
  // Raw only when the keys go to the command (-it); with -t alone Ctrl-C stays this CLI's (which ends the exec).
  // Set at the first attach: while an exec waits for a booting worker, Ctrl-C still ends this CLI.
  const rawMode = tty && options.interactive === true && stdin.isTTY;
  let rawApplied = false;
  let onResize: (() => void) | undefined;
  // `exec … | head -c1`: once the reader of our stdout (or stderr) is gone, end as a shell's writer would,
  // quietly with 141 (SIGPIPE), and let the command go (leaving the attachment kills it).
  const pipeClosed = new AbortController();
  const onPipeError = (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") pipeClosed.abort();
    else throw error;
  };
  process.stdout.on("error", onPipeError);
  process.stderr.on("error", onPipeError);
  const write = (stream: NodeJS.WriteStream) => (data: Buffer) => {
    if (!pipeClosed.signal.aborted) stream.write(data);
  };
  try {
    const exit = await client.exec(request, {
      stdout: write(process.stdout),
      stderr: write(process.stderr),
      ...(options.interactive
        ? {
            stdin: (sink) => {
              stdin.on("data", (data: Buffer) => sink.send(data));
              stdin.on("end", () => sink.end());
              stdin.resume();
            },
          }
        : {}),
      onAttach: (controls) => {
        if (rawMode && !rawApplied) {
          stdin.setRawMode(true);
          rawApplied = true;
        }
        if (!tty) return;
        if (onResize) process.stdout.off("resize", onResize);
        onResize = () => controls.resize(process.stdout.rows || 24, process.stdout.columns || 80);
        process.stdout.on("resize", onResize);
      },
    }, {
      signal: pipeClosed.signal,
      // An exec right after a backgrounded `start` (or during dev's boot) runs once the guest is ready.
      whileBooting: {
        waitMs: Math.max(0, bootDeadline - Date.now()),
        state: async () => {
          const now = await workerStatus(name);
          return now.state !== "running" ? "ended" : now.guestReady ? "ready" : "booting";
        },
      },
    }).catch(async (error: unknown) => {
      if (pipeClosed.signal.aborted) return undefined;
      // The supervisor went away under us: say why the worker ended rather than how the socket failed.
      if (error instanceof IiiError && error.code === "VmNotRunning") {
        let now = await workerStatus(name);
        for (let i = 0; i < 20 && now.state === "running"; i++) {
          await new Promise((r) => setTimeout(r, 100));
          now = await workerStatus(name);
        }
        if (now.state !== "running" && now.lastExit) throw new IiiError("VmNotRunning", `worker "${name}" is not running (${now.state}: ${now.lastExit.reason})`, { cause: error });
      }
      throw error;
    });
    if (!exit) return EXIT_PIPE_CLOSED;
    // The exit frame's error comes from the guest: shown terminal-safe (the command's own output above is not touched).
    if (exit.error) process.stderr.write(`iii-worker: ${terminalSafeLine(typeof exit.error === "string" ? exit.error : JSON.stringify(exit.error))}\n`);
    if (exit.timedOut) process.stderr.write(`iii-worker: the command timed out after ${timeoutMs / 1000} s\n`);
    // A command that never ran: a shell's status for the same failure (127 not found, 126 not runnable).
    return exit.code < 0 ? (exit.shellStatus ?? 126) : exit.code;
  } finally {
    // After a closed pipe, later writes fail too: the listeners stay, so nothing prints a stack trace.
    if (!pipeClosed.signal.aborted) {
      process.stdout.off("error", onPipeError);
      process.stderr.off("error", onPipeError);
    }
    if (rawApplied) stdin.setRawMode(false);
    if (onResize) process.stdout.off("resize", onResize);
    stdin.pause();
    stdin.unref?.();
  }
}
