import { describeError } from "../errors.js";
import { terminalSafe, terminalSafeLine } from "../util/terminal-safe.js";

/** Every name must be a worker of ./iii.workers.yaml before anything happens to any of them. */
export async function requireWorkers(names: string[]): Promise<void> {
  const { getWorker } = await import("../workers.js");
  for (const name of names) await getWorker(name);
}

/**
 * Runs `action` for each worker (in parallel: each waits on its own VM), prints one line per outcome and one
 * error line per failure (`iii-worker: NAME: message [Code]`); the exit status is the first failure's. One name
 * fails as any command does. Outcomes and messages can name a guest's text: printed terminal-safe.
 */
export async function forEachWorker(names: string[], action: (name: string) => Promise<string>): Promise<void> {
  if (names.length === 1) {
    console.error(terminalSafe(await action(names[0]!)));
    return;
  }
  const results = await Promise.allSettled(names.map(action));
  let exitCode = 0;
  results.forEach((result, i) => {
    if (result.status === "fulfilled") {
      console.error(terminalSafe(result.value));
      return;
    }
    const report = describeError(result.reason);
    console.error(`iii-worker: ${names[i]}: ${terminalSafeLine(report.message)} [${report.code}]`);
    if (exitCode === 0) exitCode = report.exitCode;
  });
  if (exitCode !== 0) process.exitCode = exitCode;
}
