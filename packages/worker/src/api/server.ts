import { createReadStream } from "node:fs";
import { rm, stat } from "node:fs/promises";
import type * as Http from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { WebSocketServer } from "ws";
import { followFile, tailLines } from "../logs.js";
import type { WorkerPaths } from "../paths.js";
import { ALLOWED_SIGNALS, type ExecCreateRequest } from "./attach-protocol.js";
import { ExecConflictError, type ExecRegistry } from "./exec-registry.js";
import { reservedEnvKeys, reservedEnvMessage } from "../launch/spec.js";

// Not `import { createServer } from "node:http"`: an ES import of node:http reads every export to build its
// namespace, and its lazy WebSocket/EventSource getters load Node's bundled undici (as in client.ts): ~30-90 ms
// of the supervisor's CPU while its boot phases run (measured with --cpu-prof).
const { createServer } = createRequire(import.meta.url)("node:http") as typeof Http;

export interface ApiServerDeps {
  paths: WorkerPaths;
  execs: ExecRegistry;
  status: () => Record<string, unknown>;
  stop: (graceMs: number | undefined) => void;
  /** Round trip of a PING over the control channel to init, in ms. */
  ping: () => Promise<number>;
  /** Restarts only the workload (dev-mode hot reload); false while the guest is not ready. */
  restart: (graceMs: number) => boolean;
  /** The vCPUs' registers read by the VMM (Vmm.vcpuRegisters); undefined where the VMM cannot. */
  vcpuRegisters?: () => Promise<string>;
  /** Each virtio device's interrupt status and rings (Vmm.virtioState); undefined where the VMM cannot. */
  virtioState?: () => Promise<unknown>;
}

const MAX_BODY_BYTES = 1024 * 1024;

/** A refused request: answered with `status` and `{ error: message }`; never leaves the server. */
class HttpError extends Error {
  readonly code = "HttpRequestRejected";
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "HttpError";
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, "request body too large");
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (error) {
    throw new HttpError(400, `body is not a JSON object: ${(error as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new HttpError(400, "body is not a JSON object: not an object");
  return value as Record<string, unknown>;
}

function parseExecRequest(body: Record<string, unknown>): ExecCreateRequest {
  const argv = body.argv;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new HttpError(400, "argv must be a non-empty array of strings");
  }
  const request: ExecCreateRequest = { argv: argv as string[] };
  if (body.env !== undefined) {
    if (body.env === null || typeof body.env !== "object" || !Object.values(body.env).every((v) => typeof v === "string")) {
      throw new HttpError(400, "env must be an object of strings");
    }
    request.env = body.env as Record<string, string>;
    const reserved = reservedEnvKeys(request.env);
    if (reserved.length > 0) throw new HttpError(400, reservedEnvMessage(reserved));
  }
  for (const key of ["cwd", "user"] as const) {
    if (body[key] !== undefined) {
      if (typeof body[key] !== "string") throw new HttpError(400, `${key} must be a string`);
      request[key] = body[key] as string;
    }
  }
  for (const key of ["rows", "cols", "timeoutMs", "pingIntervalMs", "reattachGraceMs"] as const) {
    if (body[key] !== undefined) {
      const n = body[key];
      if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw new HttpError(400, `${key} must be a whole number`);
      request[key] = n;
    }
  }
  if (body.tty !== undefined) request.tty = body.tty === true;
  if (body.stdin !== undefined) {
    if (typeof body.stdin !== "boolean") throw new HttpError(400, "stdin must be true or false");
    request.stdin = body.stdin;
  }
  if (body.onDisconnect !== undefined) {
    if (body.onDisconnect !== "keep" && body.onDisconnect !== "kill") throw new HttpError(400, 'onDisconnect must be "keep" or "kill"');
    request.onDisconnect = body.onDisconnect;
  }
  return request;
}

async function serveLogs(res: ServerResponse, url: URL, paths: WorkerPaths, signal: AbortSignal): Promise<void> {
  const stream = url.searchParams.get("stream") ?? "stdout";
  if (stream !== "stdout" && stream !== "stderr") throw new HttpError(400, 'stream must be "stdout" or "stderr"');
  const path = stream === "stdout" ? paths.stdoutLog : paths.stderrLog;
  const tailText = url.searchParams.get("tail");
  const follow = url.searchParams.get("follow") === "1" || url.searchParams.get("follow") === "true";
  res.writeHead(200, { "content-type": "application/octet-stream" });
  const size = await stat(path).then((s) => s.size, () => 0);
  if (tailText !== null) {
    if (!/^\d+$/.test(tailText)) throw new HttpError(400, "tail must be a whole number");
    res.write(await tailLines(path, Number(tailText)));
  } else if (size > 0) {
    for await (const chunk of createReadStream(path, { end: size - 1 })) if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
  }
  if (follow) {
    for await (const chunk of followFile(path, { from: size, signal })) if (!res.write(chunk)) await new Promise((r) => res.once("drain", r));
  }
  res.end();
}

/**
 * The supervisor's API on `api.sock`: status, stop, logs, and execs with a resumable attach WebSocket.
 * Plain HTTP/1.1 over a unix socket (only its owner can connect: the socket is 0600).
 */
export class ApiServer {
  private readonly http: Server;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  private readonly aborts = new Set<AbortController>();

  constructor(private readonly deps: ApiServerDeps) {
    this.http = createServer((req, res) => {
      this.route(req, res).catch((error: unknown) => {
        const status = error instanceof HttpError ? error.status : error instanceof ExecConflictError ? 409 : 500;
        if (!res.headersSent) sendJson(res, status, { error: (error as Error).message });
        else res.destroy();
      });
    });
    this.http.on("upgrade", (req, socket, head) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const match = /^\/exec\/([^/]+)\/attach$/.exec(url.pathname);
      const record = match ? this.deps.execs.get(match[1]!) : undefined;
      if (!record) {
        socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const since = Number(url.searchParams.get("since") ?? "0");
        record.attach(ws, { since: Number.isFinite(since) ? since : 0, utf8: url.searchParams.get("encoding") === "utf8" });
      });
    });
  }

  async listen(): Promise<void> {
    await rm(this.deps.paths.apiSock, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(this.deps.paths.apiSock, () => resolve());
    });
    const { chmod } = await import("node:fs/promises");
    await chmod(this.deps.paths.apiSock, 0o600);
  }

  async close(): Promise<void> {
    for (const abort of this.aborts) abort.abort();
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    await rm(this.deps.paths.apiSock, { force: true });
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const method = req.method ?? "GET";
    const path = url.pathname;
    if (method === "GET" && path === "/status") return sendJson(res, 200, this.deps.status());
    if (method === "POST" && path === "/stop") {
      const body = await readBody(req);
      const graceMs = typeof body.graceMs === "number" ? body.graceMs : undefined;
      sendJson(res, 202, { stopping: true });
      this.deps.stop(graceMs);
      return;
    }
    if (method === "GET" && path === "/debug/registers") {
      if (!this.deps.vcpuRegisters) throw new HttpError(501, "this VMM cannot read its vCPUs' registers");
      return sendJson(res, 200, { registers: await this.deps.vcpuRegisters() });
    }
    if (method === "GET" && path === "/debug/virtio") {
      if (!this.deps.virtioState) throw new HttpError(501, "this VMM cannot read its virtio devices");
      return sendJson(res, 200, await this.deps.virtioState());
    }
    if (method === "GET" && path === "/ping") {
      return sendJson(res, 200, { controlRttMs: await this.deps.ping() });
    }
    if (method === "POST" && path === "/restart") {
      const body = await readBody(req);
      const graceMs = typeof body.graceMs === "number" && body.graceMs >= 0 ? body.graceMs : 2_000;
      if (!this.deps.restart(graceMs)) return sendJson(res, 503, { error: "the guest is not ready" });
      return sendJson(res, 202, { restarting: true });
    }
    if (method === "GET" && path === "/logs") {
      const abort = new AbortController();
      this.aborts.add(abort);
      res.on("close", () => abort.abort());
      try {
        return await serveLogs(res, url, this.deps.paths, abort.signal);
      } finally {
        this.aborts.delete(abort);
      }
    }
    if (method === "POST" && path === "/exec") {
      const request = parseExecRequest(await readBody(req));
      const record = this.deps.execs.create(request);
      if (record === "busy") return sendJson(res, 429, { error: `too many execs running (limit ${this.deps.execs.maxExecs})` });
      if (record === "not-ready") return sendJson(res, 503, { error: "the guest is not ready" });
      return sendJson(res, 201, { id: record.id });
    }
    const execMatch = /^\/exec\/([^/]+)(?:\/(signal|resize))?$/.exec(path);
    if (execMatch) {
      const record = this.deps.execs.get(execMatch[1]!);
      if (!record) throw new HttpError(404, `no exec ${execMatch[1]}`);
      const action = execMatch[2];
      if (method === "GET" && !action) return sendJson(res, 200, { id: record.id, running: record.running, exit: record.exit ?? null });
      if (method === "POST" && action === "signal") {
        const body = await readBody(req);
        const signal = String(body.signal ?? "");
        if (!ALLOWED_SIGNALS.has(signal)) throw new HttpError(400, `signal "${signal}" is not allowed (allowed: ${[...ALLOWED_SIGNALS].join(", ")})`);
        record.signal(signal);
        res.writeHead(204).end();
        return;
      }
      if (method === "POST" && action === "resize") {
        const body = await readBody(req);
        const rows = body.rows;
        const cols = body.cols;
        if (typeof rows !== "number" || typeof cols !== "number" || rows < 1 || cols < 1 || rows > 65535 || cols > 65535) {
          throw new HttpError(400, "rows and cols must be numbers from 1 to 65535");
        }
        record.resize(rows, cols);
        res.writeHead(204).end();
        return;
      }
    }
    throw new HttpError(404, `no route ${method} ${path}`);
  }
}
