// Typed messages on top of frames. JSON bodies are flat objects; the frame
// header carries `type` and `stream`, so they are not repeated in the JSON.

import { utf8Decode, utf8Encode } from "../portable/bytes.js";
import { FrameType, ProtocolError, frameTypeName, type Frame, type FrameTypeName } from "./frame.js";

export interface BootStepTiming {
  /** Step name, e.g. "mount:/proc", "cgroup", "network". */
  step: string;
  /** Milliseconds the step took. */
  ms: number;
  status: "ok" | "skipped" | "warn";
  /** Why a step was skipped or warned (one line). */
  detail?: string;
}

export interface ReadyMessage {
  type: "READY";
  stream: 0;
  /** Wire protocol version of the guest (PROTOCOL_VERSION). */
  protocol: number;
  /** @iii/init package version. */
  initVersion: string;
  /** Milliseconds from init start to READY. */
  bootMs: number;
  timings: BootStepTiming[];
}

export interface PingMessage {
  type: "PING" | "PONG";
  stream: number;
  nonce: number;
}

export interface LogMessage {
  type: "LOG";
  stream: 0;
  level: "info" | "warn" | "error";
  message: string;
}

export interface ErrorMessage {
  type: "ERROR";
  stream: number;
  /** Stable code, e.g. "BAD_MESSAGE", "UNKNOWN_STREAM", "INIT_FAILED". */
  code: string;
  message: string;
}

export interface ExecRequest {
  argv: string[];
  /** Extra environment, merged over the workload's environment. */
  env?: Record<string, string>;
  /** Absolute working directory; default the workload's workdir. */
  cwd?: string;
  /** "uid[:gid]" or "name[:group]"; default the workload's user. */
  user?: string;
  /** Allocate a pseudo-terminal (stdout carries the merged terminal output). */
  tty?: boolean;
  rows?: number;
  cols?: number;
  /** After this many ms: SIGTERM to the exec's group, SIGKILL 1 s later. */
  timeoutMs?: number;
}

export interface ExecMessage extends ExecRequest {
  type: "EXEC";
  stream: number;
}

export interface StartedMessage {
  type: "STARTED";
  stream: number;
  pid: number;
}

export interface DataMessage {
  type: "STDIN" | "STDOUT" | "STDERR";
  stream: number;
  data: Uint8Array;
}

export interface EofMessage {
  type: "EOF";
  stream: number;
}

export interface ExitStatus {
  /** Exit code, or 128 + signal number when killed by a signal; -1 when it never ran. */
  code: number;
  /** Signal name when killed by a signal, else null. */
  signal: string | null;
  timedOut: boolean;
  /** Set when the process could not be started (code is -1 then). */
  error?: string;
  /** With code -1: the status a POSIX shell gives for the same failure, 127 not found, 126 found but not runnable. */
  shellStatus?: number;
}

export interface ExitMessage extends ExitStatus {
  type: "EXIT";
  stream: number;
}

export interface SignalMessage {
  type: "SIGNAL";
  stream: number;
  /** Signal name such as "SIGTERM". */
  signal: string;
}

export interface ResizeMessage {
  type: "RESIZE";
  stream: number;
  rows: number;
  cols: number;
}

export interface CreditMessage {
  type: "CREDIT";
  stream: number;
  bytes: number;
}

export interface ShutdownMessage {
  type: "SHUTDOWN";
  stream: 0;
  /** SIGTERM to the workload group, then SIGKILL after this many ms. */
  graceMs: number;
}

export interface RestartWorkloadMessage {
  type: "RESTART_WORKLOAD";
  stream: 0;
  graceMs: number;
}

export interface WorkloadStartedMessage {
  type: "WORKLOAD_STARTED";
  stream: 0;
  pid: number;
  /** Counts restarts (dev-mode hot reload); 0 for the first start. */
  generation: number;
}

export interface WorkloadExitMessage extends ExitStatus {
  type: "WORKLOAD_EXIT";
  stream: 0;
  generation: number;
  /** The cgroup recorded an OOM kill while the workload ran. */
  oomKilled: boolean;
  /** The exit was requested by SHUTDOWN or RESTART_WORKLOAD. */
  requested: boolean;
  /** SIGKILL was needed because the grace period ran out. */
  escalated: boolean;
}

export interface UnknownMessage {
  type: "UNKNOWN";
  stream: number;
  code: number;
  payload: Uint8Array;
}

export type Message =
  | ReadyMessage
  | PingMessage
  | LogMessage
  | ErrorMessage
  | ExecMessage
  | StartedMessage
  | DataMessage
  | EofMessage
  | ExitMessage
  | SignalMessage
  | ResizeMessage
  | CreditMessage
  | ShutdownMessage
  | RestartWorkloadMessage
  | WorkloadStartedMessage
  | WorkloadExitMessage;

const DATA_TYPES = new Set<FrameTypeName>(["STDIN", "STDOUT", "STDERR"]);

export function messageToFrame(message: Message): Frame {
  const code = FrameType[message.type];
  const stream = message.stream;
  if (message.type === "STDIN" || message.type === "STDOUT" || message.type === "STDERR") {
    return { type: code, stream, payload: message.data };
  }
  if (message.type === "EOF") return { type: code, stream, payload: new Uint8Array(0) };
  if (message.type === "CREDIT") {
    const payload = new Uint8Array(4);
    new DataView(payload.buffer).setUint32(0, message.bytes >>> 0, false);
    return { type: code, stream, payload };
  }
  const { type: _t, stream: _s, ...body } = message;
  return { type: code, stream, payload: utf8Encode(JSON.stringify(body)) };
}

function fail(name: string, what: string): never {
  throw new ProtocolError(`bad ${name} message: ${what}`);
}

function requireFields(name: string, body: Record<string, unknown>, fields: Record<string, string>): void {
  for (const [field, kind] of Object.entries(fields)) {
    const value = body[field];
    const ok =
      kind === "string[]"
        ? Array.isArray(value) && value.every((v) => typeof v === "string")
        : kind === "integer"
          ? Number.isInteger(value)
          : typeof value === kind;
    if (!ok) fail(name, `field "${field}" must be ${kind}`);
  }
}

const REQUIRED: Partial<Record<FrameTypeName, Record<string, string>>> = {
  READY: { protocol: "integer", initVersion: "string", bootMs: "number", timings: "object" },
  PING: { nonce: "integer" },
  PONG: { nonce: "integer" },
  LOG: { level: "string", message: "string" },
  ERROR: { code: "string", message: "string" },
  EXEC: { argv: "string[]" },
  STARTED: { pid: "integer" },
  EXIT: { code: "integer", timedOut: "boolean" },
  SIGNAL: { signal: "string" },
  RESIZE: { rows: "integer", cols: "integer" },
  SHUTDOWN: { graceMs: "number" },
  RESTART_WORKLOAD: { graceMs: "number" },
  WORKLOAD_STARTED: { pid: "integer", generation: "integer" },
  WORKLOAD_EXIT: { code: "integer", timedOut: "boolean", generation: "integer", oomKilled: "boolean" },
};

/** Decode a frame into a typed message. Unknown frame types become UNKNOWN; malformed known ones throw. */
export function frameToMessage(frame: Frame): Message | UnknownMessage {
  const name = frameTypeName(frame.type);
  const stream = frame.stream;
  if (name === undefined) return { type: "UNKNOWN", stream, code: frame.type, payload: frame.payload };
  if (DATA_TYPES.has(name)) return { type: name as DataMessage["type"], stream, data: frame.payload };
  if (name === "EOF") return { type: "EOF", stream };
  if (name === "CREDIT") {
    if (frame.payload.byteLength !== 4) fail(name, `payload must be 4 bytes, got ${frame.payload.byteLength}`);
    const bytes = new DataView(frame.payload.buffer, frame.payload.byteOffset, 4).getUint32(0, false);
    return { type: "CREDIT", stream, bytes };
  }
  let body: unknown;
  try {
    body = JSON.parse(utf8Decode(frame.payload));
  } catch (err) {
    fail(name, `payload is not UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) fail(name, "payload must be a JSON object");
  const record = body as Record<string, unknown>;
  requireFields(name, record, REQUIRED[name] ?? {});
  if (name === "EXEC" && (record.argv as string[]).length === 0) fail(name, "argv must not be empty");
  if (name === "EXEC" && record.env !== undefined) {
    const env = record.env;
    if (typeof env !== "object" || env === null || Array.isArray(env) || !Object.values(env).every((v) => typeof v === "string")) {
      fail(name, 'field "env" must be an object of strings');
    }
  }
  return { ...record, type: name, stream } as Message;
}
