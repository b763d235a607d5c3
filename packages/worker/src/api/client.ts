import type * as Http from "node:http";
import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import { IiiError } from "../errors.js";
import { workerPaths } from "../paths.js";
import type { VirtioDeviceState } from "../vmm/types.js";
import { decodeOutput, type ClientControl, type ExecCreateRequest, type ExitFrame } from "./attach-protocol.js";

// Not `import { request } from "node:http"`: an ES import of node:http reads every export to build its namespace,
// and its lazy WebSocket/EventSource getters load Node's bundled undici: ~50 ms of every `exec` (measured).
const { request } = createRequire(import.meta.url)("node:http") as typeof Http;

export class ApiError extends Error {
  readonly code = "ApiRequestFailed";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export interface ExecIo {
  stdout: (data: Buffer) => void;
  stderr: (data: Buffer) => void;
  /** Feeds stdin; call `send` with bytes and `end` at EOF. */
  stdin?: (sink: { send: (data: Buffer) => void; end: () => void }) => void;
  /** Called with a function that forwards terminal size changes. */
  onAttach?: (controls: { resize: (rows: number, cols: number) => void; signal: (signal: string) => void }) => void;
}

export interface WhileBooting {
  waitMs: number;
  /** Where the worker is: still booting (worth waiting for), ready (its API socket should answer), or ended. */
  state: () => Promise<"booting" | "ready" | "ended">;
}

/** A refusal that only says the worker is not up yet: no API socket (yet), or the supervisor's "not ready" (503). */
function isBooting(error: unknown): boolean {
  if (!(error instanceof IiiError)) return false;
  if (error.code === "ExecRejected") return error.cause instanceof ApiError && error.cause.status === 503;
  return error.code === "VmNotRunning" && errnoOf(error) !== undefined;
}

/** ENOENT or ECONNREFUSED: the connect failure behind a VmNotRunning, when that is what it was. */
function errnoOf(error: unknown): "ENOENT" | "ECONNREFUSED" | undefined {
  const code = ((error as IiiError).cause as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOENT" || code === "ECONNREFUSED" ? code : undefined;
}

/** Client of a supervisor's api.sock: what `iii worker exec`, `logs` and `stop` use, and what other tools can. */
export class SupervisorClient {
  constructor(readonly socketPath: string) {}

  static forWorker(name: string, env: NodeJS.ProcessEnv = process.env, projectDir?: string): SupervisorClient {
    return new SupervisorClient(workerPaths(name, env, projectDir).apiSock);
  }

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        { socketPath: this.socketPath, method, path, headers: payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {} },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const parsed = text ? (JSON.parse(text) as unknown) : undefined;
            if ((res.statusCode ?? 500) >= 400) {
              reject(new ApiError(res.statusCode ?? 500, (parsed as { error?: string } | undefined)?.error ?? `HTTP ${res.statusCode}`));
            } else resolve(parsed as T);
          });
        },
      );
      req.on("error", (error) => reject(new IiiError("VmNotRunning", `cannot reach the worker's supervisor at ${this.socketPath}: ${error.message}`, { cause: error })));
      req.end(payload);
    });
  }

  status(): Promise<Record<string, unknown>> {
    return this.call("GET", "/status");
  }

  stop(graceMs?: number): Promise<unknown> {
    return this.call("POST", "/stop", graceMs === undefined ? {} : { graceMs });
  }

  /** Round trip over the control channel to the guest's init, in ms. */
  async ping(): Promise<number> {
    return (await this.call<{ controlRttMs: number }>("GET", "/ping")).controlRttMs;
  }

  /** Each vCPU's registers as QEMU prints them (`info registers -a`), read without the guest's help. */
  async vcpuRegisters(): Promise<string> {
    return (await this.call<{ registers: string }>("GET", "/debug/registers")).registers;
  }

  /** Each virtio device's interrupt status and its used queues' ring indexes, read from guest memory. */
  virtioState(): Promise<VirtioDeviceState[]> {
    return this.call("GET", "/debug/virtio");
  }

  /** Restarts only the workload process (not the VM). */
  restart(graceMs = 2_000): Promise<unknown> {
    return this.call("POST", "/restart", { graceMs });
  }

  async createExec(req: ExecCreateRequest): Promise<{ id: string }> {
    try {
      return await this.call<{ id: string }>("POST", "/exec", req);
    } catch (error) {
      if (error instanceof ApiError) throw new IiiError("ExecRejected", `the worker refused the exec: ${error.message} (HTTP ${error.status})`, { cause: error });
      throw error;
    }
  }

  execInfo(id: string): Promise<{ id: string; running: boolean; exit: ExitFrame | null }> {
    return this.call("GET", `/exec/${id}`);
  }

  signal(id: string, signal: string): Promise<unknown> {
    return this.call("POST", `/exec/${id}/signal`, { signal });
  }

  resize(id: string, rows: number, cols: number): Promise<unknown> {
    return this.call("POST", `/exec/${id}/resize`, { rows, cols });
  }

  /**
   * POST /exec, waiting (up to `waitMs`) while the worker is still booting: its supervisor has not opened this
   * socket yet, or its guest is not ready. The guest runs nothing before the request is accepted, so a retry cannot
   * run the command twice. `state` says whether the worker is still booting, ready, or gone.
   */
  private async createExecWhenReady(req: ExecCreateRequest, { waitMs, state }: WhileBooting): Promise<{ id: string }> {
    const deadline = Date.now() + waitMs;
    let unreachableWhileReady = 0;
    for (;;) {
      try {
        return await this.createExec(req);
      } catch (error) {
        if (!isBooting(error)) throw error;
        const now = await state();
        // The worker ended while we waited: say so (the caller names how it ended), not "not ready".
        if (now === "ended") throw new IiiError("VmNotRunning", "the worker is not running any more", { cause: error });
        // A socket that is missing or refuses once the guest is ready is gone for good (deleted, or its server
        // closed): waiting for a boot that already happened would only end in VmBooting a minute later. Seen
        // three times in a row (~200 ms), so a supervisor that is dying right now is reported as ended instead.
        const socketError = errnoOf(error);
        if (now === "ready" && socketError) {
          if (++unreachableWhileReady >= 3) {
            throw new IiiError("ApiUnreachable", `the worker's API socket ${this.socketPath} does not answer (${socketError}) although its guest is ready: its supervisor cannot be reached`, { cause: error });
          }
        } else unreachableWhileReady = 0;
        if (Date.now() >= deadline) throw new IiiError("VmBooting", `the worker is still booting after ${Math.round(waitMs / 1000)} s: its guest is not ready`, { cause: error });
      }
      await sleep(100);
    }
  }

  /** Opens the attach WebSocket (raw mode) replaying output after `since`. */
  attachSocket(id: string, since = 0): WebSocket {
    return new WebSocket(`ws+unix://${this.socketPath}:/exec/${id}/attach?since=${since}`, { perMessageDeflate: false });
  }

  /**
   * Runs a command and resolves with its exit. Output arrives through `io`; when the attach connection
   * drops before the exit frame, it re-attaches with the last sequence number it saw, so no output is
   * lost or repeated.
   */
  async exec(req: ExecCreateRequest, io: ExecIo, options: { maxReattachMs?: number; signal?: AbortSignal; whileBooting?: WhileBooting } = {}): Promise<ExitFrame> {
    const { id } = options.whileBooting ? await this.createExecWhenReady(req, options.whileBooting) : await this.createExec(req);
    // Aborting leaves the attachment for good (with onDisconnect "kill", the command is killed).
    options.signal?.addEventListener("abort", () => current?.terminate(), { once: true });
    let lastSeq = 0;
    let stdinStarted = false;
    let current: WebSocket | undefined;
    // Stdin typed while re-attaching waits here instead of being lost.
    const pendingStdin: Array<Buffer | ClientControl> = [];
    const sendOrQueue = (item: Buffer | ClientControl) => {
      if (current?.readyState === WebSocket.OPEN) current.send(Buffer.isBuffer(item) ? item : JSON.stringify(item));
      else pendingStdin.push(item);
    };
    const deadline = () => Date.now() + (options.maxReattachMs ?? 30_000);
    let giveUpAt = deadline();
    for (;;) {
      options.signal?.throwIfAborted();
      const outcome = await new Promise<ExitFrame | "dropped">((resolve) => {
        const ws = this.attachSocket(id, lastSeq);
        current = ws;
        let exit: ExitFrame | undefined;
        const sendControl = (control: ClientControl) => {
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(control));
        };
        ws.on("open", () => {
          giveUpAt = deadline();
          for (const item of pendingStdin.splice(0)) ws.send(Buffer.isBuffer(item) ? item : JSON.stringify(item));
          io.onAttach?.({ resize: (rows, cols) => sendControl({ type: "resize", rows, cols }), signal: (signal) => sendControl({ type: "signal", signal }) });
          if (!stdinStarted && io.stdin) {
            stdinStarted = true;
            io.stdin({ send: (data) => sendOrQueue(data), end: () => sendOrQueue({ type: "eof" }) });
          }
        });
        ws.on("message", (data: Buffer, isBinary) => {
          if (isBinary) {
            const frame = decodeOutput(data);
            if (!frame || frame.seq <= lastSeq) return;
            lastSeq = frame.seq;
            (frame.kind === "stdout" ? io.stdout : io.stderr)(frame.data);
            return;
          }
          const message = JSON.parse(data.toString("utf8")) as { type: string };
          if (message.type === "exit") exit = message as ExitFrame;
        });
        ws.on("error", () => {});
        ws.on("close", () => resolve(exit ?? "dropped"));
      });
      if (outcome !== "dropped") return outcome;
      options.signal?.throwIfAborted();
      if (Date.now() > giveUpAt) throw new IiiError("VmNotRunning", `lost the attachment to exec ${id} and could not re-attach`);
      await sleep(100);
    }
  }
}
