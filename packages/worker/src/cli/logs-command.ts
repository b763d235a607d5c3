import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { IiiError } from "../errors.js";
import { followFile, tailLines } from "../logs.js";
import { workerPaths } from "../paths.js";
import { getWorker } from "../workers.js";

export type LogStream = "stdout" | "stderr";

export interface PrintLogsOptions {
  follow: boolean;
  streams: LogStream[];
  tail?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export function parseTail(text: string): number {
  if (!/^\d+$/.test(text)) throw new IiiError("InvalidOption", `invalid --tail "${text}": expected a whole number of lines`);
  return Number(text);
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

function write(stream: LogStream, chunk: Buffer | string): Promise<void> {
  const out = stream === "stdout" ? process.stdout : process.stderr;
  return new Promise((resolve) => (out.write(chunk) ? resolve() : out.once("drain", resolve)));
}

async function printOne(path: string, stream: LogStream, options: PrintLogsOptions, signal: AbortSignal): Promise<void> {
  const size = await sizeOf(path);
  if (options.tail !== undefined) {
    await write(stream, await tailLines(path, options.tail));
  } else if (size > 0) {
    for await (const chunk of createReadStream(path, { end: size - 1 })) await write(stream, chunk as Buffer);
  }
  if (!options.follow) return;
  for await (const chunk of followFile(path, { from: size, signal })) await write(stream, chunk);
}

/** `iii worker logs`: prints (and with follow, keeps printing) the workload's log files. */
export async function printLogs(name: string, options: PrintLogsOptions): Promise<void> {
  await getWorker(name, options.cwd);
  const paths = workerPaths(name, options.env, options.cwd);
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await Promise.all(
      options.streams.map((stream) =>
        printOne(stream === "stdout" ? paths.stdoutLog : paths.stderrLog, stream, options, controller.signal),
      ),
    );
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}
