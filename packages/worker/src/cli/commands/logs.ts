import type { Command } from "commander";

/** `iii-worker logs`: prints or follows a worker's output. */
export function registerLogs(program: Command): void {
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
      const { parseTail, printLogs } = await import("./logs-run.js");
      const { parseLogTime } = await import("../../log-times.js");
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
}
