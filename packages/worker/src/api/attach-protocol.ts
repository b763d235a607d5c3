/**
 * The attach WebSocket of `GET /exec/:id/attach` (binary-safe, resumable):
 *
 * server → client
 *   binary  [kind u8][seq u32 BE][bytes]     kind 1 = stdout, 2 = stderr (raw mode, the default)
 *   text    {"type":"stdout"|"stderr","seq":n,"data":"…"}   (?encoding=utf8: decoded across chunk boundaries)
 *   text    {"type":"exit","code":n,"signal":s|null,"timedOut":b,"error"?:s,"shellStatus"?:n}   then the socket closes (1000)
 *   text    {"type":"gap","from":n}   output before seq n was evicted from the backlog
 * client → server
 *   binary  stdin bytes
 *   text    {"type":"eof"} | {"type":"resize","rows":r,"cols":c} | {"type":"signal","signal":"SIGINT"}
 *
 * Every output chunk has a sequence number; re-attaching with `?since=<last seq seen>` replays what came after.
 */
import type { ExecRequest } from "@iii/init";

export const OUTPUT_KIND = { stdout: 1, stderr: 2 } as const;
export type OutputKind = keyof typeof OUTPUT_KIND;

export interface ExitFrame {
  type: "exit";
  code: number;
  signal: string | null;
  timedOut: boolean;
  error?: string;
  /** With code -1 (it never ran): what a shell's $? would be, 127 not found, 126 not runnable. */
  shellStatus?: number;
}

export type ClientControl =
  | { type: "eof" }
  | { type: "resize"; rows: number; cols: number }
  | { type: "signal"; signal: string };

/** Signals a client may send to an exec; anything else is refused with 400. */
export const ALLOWED_SIGNALS = new Set(["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCONT", "SIGSTOP", "SIGTSTP"]);

export function encodeOutput(kind: OutputKind, seq: number, data: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + data.byteLength);
  frame[0] = OUTPUT_KIND[kind];
  frame.writeUInt32BE(seq >>> 0, 1);
  frame.set(data, 5);
  return frame;
}

export function decodeOutput(frame: Buffer): { kind: OutputKind; seq: number; data: Buffer } | undefined {
  if (frame.length < 5) return undefined;
  const kind = frame[0] === 1 ? "stdout" : frame[0] === 2 ? "stderr" : undefined;
  if (!kind) return undefined;
  return { kind, seq: frame.readUInt32BE(1), data: frame.subarray(5) };
}

/** An exec as the guest runs it (argv, env, cwd, user, tty, rows, cols, timeoutMs; 0 = no timeout), plus attach options. */
export interface ExecCreateRequest extends ExecRequest {
  /** false: the command's stdin is at end-of-file from the start (`exec` without -i). Default true: a client feeds it. */
  stdin?: boolean;
  /** What happens when the attached client is lost and does not re-attach within the grace period. */
  onDisconnect?: "keep" | "kill";
  /** Liveness: the server pings every interval; 3 missed pongs end the attachment. Default 5000. */
  pingIntervalMs?: number;
  /** How long a finished or detached exec stays re-attachable. Default 60000. */
  reattachGraceMs?: number;
}
