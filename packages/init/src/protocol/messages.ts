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

// Host → guest messages: init checks what it uses (exec.ts). Guest → host messages are checked in full below.
const REQUIRED: Partial<Record<FrameTypeName, Record<string, string>>> = {
  EXEC: { argv: "string[]" },
  SIGNAL: { signal: "string" },
  RESIZE: { rows: "integer", cols: "integer" },
  SHUTDOWN: { graceMs: "number" },
  RESTART_WORKLOAD: { graceMs: "number" },
};

/** Longest free-text field a guest may send (an error or log line); a frame itself may be 1 MiB. */
export const MAX_GUEST_TEXT_CHARS = 64 * 1024;
/** Longest name-like field (a signal, an error code, a boot step, the init version). */
const MAX_GUEST_NAME_CHARS = 128;
/** Most boot steps a READY may report (init reports about 20). */
export const MAX_READY_TIMINGS = 256;
const MAX_PID = 0x3fffffff;

/**
 * Reads one message the guest sends to the host, field by field: types, ranges and lengths, and nothing else is
 * kept. The guest is untrusted (guest root can write on init's port): a value of an unexpected type, e.g. a
 * `signal` of `{"toString":1}`, must be a protocol error here, not a TypeError in the supervisor's code.
 */
class GuestBody {
  constructor(
    private readonly name: string,
    private readonly body: Record<string, unknown>,
  ) {}
  private bad(field: string, what: string): never {
    fail(this.name, `field "${field}" must be ${what}`);
  }
  integer(field: string, min: number, max: number): number {
    const v = this.body[field];
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) this.bad(field, `an integer from ${min} to ${max}`);
    return v;
  }
  finite(field: string, min: number, max: number): number {
    const v = this.body[field];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) this.bad(field, `a number from ${min} to ${max}`);
    return v;
  }
  boolean(field: string): boolean {
    const v = this.body[field];
    if (typeof v !== "boolean") this.bad(field, "a boolean");
    return v;
  }
  string(field: string, maxChars: number, minChars = 0): string {
    const v = this.body[field];
    if (typeof v !== "string" || v.length > maxChars || v.length < minChars) this.bad(field, `a string of ${minChars} to ${maxChars} characters`);
    return v;
  }
  oneOf<T extends string>(field: string, values: readonly T[]): T {
    const v = this.body[field];
    if (typeof v !== "string" || !(values as readonly string[]).includes(v)) this.bad(field, `one of ${values.join(", ")}`);
    return v as T;
  }
  has(field: string): boolean {
    return this.body[field] !== undefined;
  }
  get raw(): Record<string, unknown> {
    return this.body;
  }
}

function exitStatus(b: GuestBody): ExitStatus {
  const signal = b.raw.signal === null ? null : b.string("signal", MAX_GUEST_NAME_CHARS, 1);
  // -1: never ran; 0-255: exit status, or 128 + signal number.
  const status: ExitStatus = { code: b.integer("code", -1, 255), signal, timedOut: b.boolean("timedOut") };
  if (b.has("error")) status.error = b.string("error", MAX_GUEST_TEXT_CHARS);
  if (b.has("shellStatus")) status.shellStatus = b.integer("shellStatus", 0, 255);
  return status;
}

function bootTimings(b: GuestBody): BootStepTiming[] {
  const list = b.raw.timings;
  if (!Array.isArray(list) || list.length > MAX_READY_TIMINGS) fail("READY", `field "timings" must be an array of at most ${MAX_READY_TIMINGS} steps`);
  return list.map((item: unknown, i: number) => {
    if (typeof item !== "object" || item === null || Array.isArray(item)) fail("READY", `timings[${i}] must be an object`);
    const t = new GuestBody(`READY timings[${i}]`, item as Record<string, unknown>);
    const step: BootStepTiming = {
      step: t.string("step", MAX_GUEST_NAME_CHARS, 1),
      ms: t.finite("ms", 0, Number.MAX_SAFE_INTEGER),
      status: t.oneOf("status", ["ok", "skipped", "warn"] as const),
    };
    if (t.has("detail")) step.detail = t.string("detail", MAX_GUEST_TEXT_CHARS);
    return step;
  });
}

/** The guest → host message types, each read into exactly its declared fields; undefined for the others. */
function guestMessage(name: FrameTypeName, stream: number, record: Record<string, unknown>): Message | undefined {
  const b = new GuestBody(name, record);
  const controlOnly = name === "READY" || name === "LOG" || name === "WORKLOAD_STARTED" || name === "WORKLOAD_EXIT";
  if (controlOnly && stream !== 0) fail(name, `it belongs on stream 0, not ${stream}`);
  switch (name) {
    case "READY":
      return {
        type: "READY",
        stream: 0,
        protocol: b.integer("protocol", 0, 0xffff),
        initVersion: b.string("initVersion", MAX_GUEST_NAME_CHARS),
        bootMs: b.finite("bootMs", 0, Number.MAX_SAFE_INTEGER),
        timings: bootTimings(b),
      };
    case "PING":
    case "PONG":
      return { type: name, stream, nonce: b.integer("nonce", 0, Number.MAX_SAFE_INTEGER) };
    case "LOG":
      return { type: "LOG", stream: 0, level: b.oneOf("level", ["info", "warn", "error"] as const), message: b.string("message", MAX_GUEST_TEXT_CHARS) };
    case "ERROR":
      return { type: "ERROR", stream, code: b.string("code", MAX_GUEST_NAME_CHARS, 1), message: b.string("message", MAX_GUEST_TEXT_CHARS) };
    case "STARTED":
      return { type: "STARTED", stream, pid: b.integer("pid", 1, MAX_PID) };
    case "EXIT":
      return { type: "EXIT", stream, ...exitStatus(b) };
    case "WORKLOAD_STARTED":
      return { type: "WORKLOAD_STARTED", stream: 0, pid: b.integer("pid", 1, MAX_PID), generation: b.integer("generation", 0, Number.MAX_SAFE_INTEGER) };
    case "WORKLOAD_EXIT":
      return {
        type: "WORKLOAD_EXIT",
        stream: 0,
        ...exitStatus(b),
        generation: b.integer("generation", 0, Number.MAX_SAFE_INTEGER),
        oomKilled: b.boolean("oomKilled"),
        requested: b.boolean("requested"),
        escalated: b.boolean("escalated"),
      };
    default:
      return undefined;
  }
}

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
  const fromGuest = guestMessage(name, stream, record);
  if (fromGuest) return fromGuest;
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
