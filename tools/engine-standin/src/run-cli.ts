import { parseArgs } from "node:util";
import {
  DEFAULT_ENGINE_PORT,
  startEngineStandin,
  type EngineStandin,
  type FunctionRegistration,
} from "./engine-standin.js";
import { formatEvent } from "./format.js";

export const USAGE = `usage: iii-engine-standin [--port ${DEFAULT_ENGINE_PORT}] [--host 127.0.0.1]
                          [--invoke <function_id> [--payload '<json>'] [--exit-after-invoke] [--timeout <ms>]]
                          [--json]

A local STAND-IN for the iii engine, for tests and demos. It is not the iii engine: it accepts
iii-sdk workers over WebSocket, prints their function registrations and, with --invoke, invokes a
function each time it is registered and prints the result. Triggers are recorded, never fired.

  --port <n>            port to listen on (0 picks a free one; default ${DEFAULT_ENGINE_PORT})
  --host <addr>         address to listen on (default 127.0.0.1)
  --invoke <id>         invoke this function when a worker registers it (again after each re-registration)
  --payload <json>      the invocation payload (default {})
  --exit-after-invoke   exit after the first invocation: 0 if it succeeded, 1 if it failed
  --timeout <ms>        with --exit-after-invoke: give up (exit 1) if nothing was invoked within <ms>
  --json                one JSON object per line instead of text`;

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  /** Aborting stops the stand-in (the shell wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
  /** Called once the server listens, with the running stand-in (tests use it to learn the port). */
  onListening?: (standin: EngineStandin) => void;
}

/** The whole CLI behind a function so it tests without a child process. Resolves with the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        invoke: { type: "string" },
        payload: { type: "string" },
        "exit-after-invoke": { type: "boolean" },
        timeout: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    io.err(`iii-engine-standin: ${(error as Error).message}`);
    io.err(USAGE);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const usageError = (message: string): number => {
    io.err(`iii-engine-standin: ${message}`);
    return 2;
  };
  const port = values.port === undefined ? DEFAULT_ENGINE_PORT : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) return usageError(`invalid --port "${values.port}"`);
  let payload: unknown = {};
  if (values.payload !== undefined) {
    try {
      payload = JSON.parse(values.payload);
    } catch (error) {
      return usageError(`--payload is not JSON: ${(error as Error).message}`);
    }
  }
  const functionId = values.invoke;
  if (functionId === undefined && (values.payload !== undefined || values["exit-after-invoke"])) {
    return usageError("--payload and --exit-after-invoke need --invoke <function_id>");
  }
  const timeoutMs = values.timeout === undefined ? undefined : Number(values.timeout);
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)) {
    return usageError(`invalid --timeout "${values.timeout}" (milliseconds)`);
  }
  const json = values.json ?? false;

  let standin: EngineStandin;
  try {
    standin = await startEngineStandin({ port, host: values.host ?? "127.0.0.1" });
  } catch (error) {
    io.err(`iii-engine-standin: cannot listen on ${values.host ?? "127.0.0.1"}:${port}: ${(error as Error).message}`);
    return 1;
  }
  try {
    io.out(
      json
        ? JSON.stringify({ event: "listening", url: standin.url, standin: true })
        : `iii engine stand-in (not the real engine) listening on ${standin.url}`,
    );
    standin.events.on("event", (event) => io.out(formatEvent(event, json)));
    io.onListening?.(standin);

    return await new Promise<number>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (code: number): void => {
        clearTimeout(timer);
        io.signal?.removeEventListener("abort", onAbort);
        resolve(code);
      };
      const onAbort = (): void => finish(0);
      if (io.signal?.aborted) return finish(0);
      io.signal?.addEventListener("abort", onAbort);
      if (timeoutMs !== undefined && values["exit-after-invoke"]) {
        timer = setTimeout(() => {
          io.err(`iii-engine-standin: ${functionId} was not invoked within ${timeoutMs} ms`);
          finish(1);
        }, timeoutMs);
      }
      if (functionId === undefined) return;
      const onRegistered = (registration: FunctionRegistration): void => {
        if (registration.functionId !== functionId) return;
        // Success and failure are both printed by the "invoked" event.
        standin.invoke(functionId, payload).then(
          () => values["exit-after-invoke"] && finish(0),
          (error: unknown) => {
            if (values["exit-after-invoke"]) finish(1);
            else if (!(error instanceof Error && error.name === "InvocationFailedError")) {
              io.err(`iii-engine-standin: ${(error as Error).message}`);
            }
          },
        );
      };
      standin.registrations.on("registered", onRegistered);
      for (const registration of standin.functions()) onRegistered(registration);
    });
  } finally {
    await standin.close();
  }
}
