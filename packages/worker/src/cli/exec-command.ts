import { IiiError } from "../errors.js";
import { SupervisorClient } from "../api/client.js";
import type { ExecCreateRequest } from "../api/attach-protocol.js";
import { parseEnvAssignment } from "../state/model.js";
import { workerStatus } from "../status.js";
import { getWorker } from "../workers.js";

export interface ExecCommandOptions {
  interactive?: boolean;
  tty?: boolean;
  env?: string[];
  workdir?: string;
  user?: string;
  timeout?: string;
}

/** `iii worker exec`: runs a command in a running worker; resolves with the command's exit status. */
export async function runExecCommand(name: string, argv: string[], options: ExecCommandOptions): Promise<number> {
  const status = await workerStatus(name);
  if (status.state !== "running") {
    await getWorker(name); // names an unknown worker as such
    throw new IiiError("VmNotRunning", `worker "${name}" is not running (${status.state})`);
  }
  if (argv.length === 0) throw new IiiError("UsageError", "exec needs a command after --");
  let timeoutMs = 0;
  if (options.timeout !== undefined) {
    const seconds = Number(options.timeout);
    if (!/^\d+(\.\d+)?$/.test(options.timeout)) throw new IiiError("InvalidOption", `invalid --timeout "${options.timeout}": expected seconds (0 disables)`);
    timeoutMs = Math.round(seconds * 1000);
  }
  const tty = options.tty === true;
  const request: ExecCreateRequest = {
    argv,
    env: Object.fromEntries((options.env ?? []).map(parseEnvAssignment)),
    tty,
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
  const rawMode = tty && stdin.isTTY;
  if (rawMode) stdin.setRawMode(true);
  let onResize: (() => void) | undefined;
  try {
    const exit = await client.exec(request, {
      stdout: (data) => process.stdout.write(data),
      stderr: (data) => process.stderr.write(data),
      ...(options.interactive || tty
        ? {
            stdin: (sink) => {
              stdin.on("data", (data: Buffer) => sink.send(data));
              stdin.on("end", () => sink.end());
              stdin.resume();
            },
          }
        : {}),
      onAttach: (controls) => {
        if (!tty) return;
        if (onResize) process.stdout.off("resize", onResize);
        onResize = () => controls.resize(process.stdout.rows || 24, process.stdout.columns || 80);
        process.stdout.on("resize", onResize);
      },
    });
    if (exit.error) process.stderr.write(`iii-worker: ${exit.error}\n`);
    if (exit.timedOut) process.stderr.write(`iii-worker: the command timed out after ${timeoutMs / 1000} s\n`);
    return exit.code < 0 ? 126 : exit.code;
  } finally {
    if (rawMode) stdin.setRawMode(false);
    if (onResize) process.stdout.off("resize", onResize);
    stdin.pause();
    stdin.unref?.();
  }
}
