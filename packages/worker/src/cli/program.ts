import { Command, CommanderError } from "commander";
import pkg from "../../package.json" with { type: "json" };
import { describeError, type ErrorReport } from "../errors.js";
import { registerAdd } from "./commands/add.js";
import { registerCompletion } from "./commands/completion.js";
import { registerDev } from "./commands/dev.js";
import { registerDoctor } from "./commands/doctor.js";
import { registerExec } from "./commands/exec.js";
import { registerImages } from "./commands/images.js";
import { registerInspect } from "./commands/inspect.js";
import { registerList } from "./commands/list.js";
import { registerLogin } from "./commands/login.js";
import { registerLogs } from "./commands/logs.js";
import { registerPrune } from "./commands/prune.js";
import { registerRemove } from "./commands/remove.js";
import { registerRestart } from "./commands/restart.js";
import { registerStart } from "./commands/start.js";
import { registerStartAll } from "./commands/start-all.js";
import { registerStop } from "./commands/stop.js";
import { registerStopAll } from "./commands/stop-all.js";
import { registerWasmRun } from "./commands/wasm-run.js";
import { terminalJson, terminalSafe, terminalSafeLine } from "../util/terminal-safe.js";
import { iiiHome } from "../paths.js";
import { checkHomeSafe } from "../state/home-safety.js";

export { DEFAULT_ENGINE_PORT, DEFAULT_ENGINE_URL } from "./options.js";

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

  // One file per command under commands/ (a heavy body loads when its command runs: commands/<name>-run.ts).
  registerAdd(program);
  registerRemove(program);
  registerList(program);
  registerInspect(program);
  registerDoctor(program);
  registerStart(program);
  registerStop(program);
  registerRestart(program);
  registerLogs(program);
  registerExec(program);
  registerDev(program);
  registerStartAll(program);
  registerStopAll(program);
  registerImageCommands(program);
  registerCompletion(program);
  registerWasmRun(program);

  program.version(pkg.version, "-V, --version", "print the version");
  // Before any command touches III_HOME: one another local user owns or can write is refused (state/home-safety.ts).
  // `completion` prints a script and `doctor` reports on the host (a doctor that cannot start helps nobody).
  program.hook("preAction", (_program, command) => {
    if (command.name() === "completion" || command.name() === "doctor") return;
    checkHomeSafe(iiiHome());
  });
  return program;
}

/** `images`, `prune`, `login`: the image cache and registry credentials (their code loads when they run). */
export function registerImageCommands(program: Command): void {
  registerImages(program);
  registerPrune(program);
  registerLogin(program);
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
 * `--debug` adds the stack on stderr. A message can carry a guest's or an image's text (a start failure's console
 * tail, a last exit's reason): its control characters are shown, not sent (util/terminal-safe.ts).
 */
function reportError(report: ErrorReport, json: boolean, stack: string | undefined): void {
  if (json) process.stdout.write(`${terminalJson({ error: { code: report.code, message: report.message } })}\n`);
  else process.stderr.write(`iii-worker: ${terminalSafeLine(report.message)} [${report.code}]\n`);
  if (stack) process.stderr.write(`${terminalSafe(stack)}\n`);
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
