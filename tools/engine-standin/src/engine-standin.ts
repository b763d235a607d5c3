import { randomUUID } from "node:crypto";
import { EventEmitter, on } from "node:events";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";
import {
  encodeEngineMessage,
  parseWorkerMessage,
  ProtocolError,
  type EngineToWorker,
  type ErrorBody,
  type WorkerToEngine,
} from "./protocol.js";

/** The port the iii engine listens on for workers; the stand-in uses it too so `III_URL` defaults line up. */
export const DEFAULT_ENGINE_PORT = 49134;
export const DEFAULT_INVOCATION_TIMEOUT_MS = 30_000;

export interface EngineStandinOptions {
  /** 0 picks a free port. Default 49134. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** How long `invoke` waits for the worker's result. Default 30 s. */
  invocationTimeoutMs?: number;
}

export interface FunctionRegistration {
  functionId: string;
  workerId: string;
  description?: string;
  registeredAt: Date;
}

export interface WorkerInfo {
  workerId: string;
  remoteAddress: string;
  /** Reported by the SDK through `engine::workers::register` after it connects. */
  name?: string;
  runtime?: string;
  sdkVersion?: string;
  /** The worker's sandbox as its SDK reports it (`III_ISOLATION`: microvm, wasm; absent for a bare process). */
  isolation?: string;
}

export type StandinEvent =
  | { kind: "worker-connected"; workerId: string; remoteAddress: string }
  | { kind: "worker-identified"; workerId: string; name?: string; runtime?: string; sdkVersion?: string; isolation?: string }
  | { kind: "worker-disconnected"; workerId: string; functionIds: string[] }
  | { kind: "function-registered"; workerId: string; functionId: string }
  | { kind: "function-unregistered"; workerId: string; functionId: string }
  | { kind: "trigger-registered"; workerId: string; triggerId: string; triggerType: string; functionId: string }
  | {
      kind: "invoked";
      functionId: string;
      invocationId: string;
      durationMs: number;
      result?: unknown;
      error?: ErrorBody;
    }
  | { kind: "protocol-error"; workerId: string; message: string };

/** Why an `invoke` failed: the worker's own error body, or the stand-in's (`function_not_found`, `timeout`, …). */
export class InvocationFailedError extends Error {
  override readonly name = "InvocationFailedError";
  readonly code: string;
  readonly functionId: string;
  readonly stacktrace?: string;

  constructor(functionId: string, body: ErrorBody) {
    super(`${functionId}: ${body.code}: ${body.message}`);
    this.code = body.code;
    this.functionId = functionId;
    if (body.stacktrace !== undefined) this.stacktrace = body.stacktrace;
  }
}

/**
 * Function registrations as they happen. Listen with `on("registered", r => …)` / `on("unregistered", …)`,
 * or `for await (const r of registrations)` to get the current ones first and then each new one.
 */
export class RegistrationFeed extends EventEmitter<{
  registered: [FunctionRegistration];
  unregistered: [FunctionRegistration];
}> {
  readonly #current: () => FunctionRegistration[];
  readonly #closed: AbortSignal;

  constructor(current: () => FunctionRegistration[], closed: AbortSignal) {
    super();
    this.#current = current;
    this.#closed = closed;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<FunctionRegistration> {
    if (this.#closed.aborted) return;
    // Subscribe before replaying the snapshot so nothing registered in between is missed.
    const live = on(this, "registered", { signal: this.#closed });
    const seen = new Set<FunctionRegistration>();
    for (const registration of this.#current()) {
      seen.add(registration);
      yield registration;
    }
    try {
      for await (const [registration] of live as AsyncIterableIterator<[FunctionRegistration]>) {
        if (!seen.has(registration)) yield registration;
      }
    } catch (error) {
      if ((error as Error).name !== "AbortError") throw error;
    }
  }
}

export interface EngineStandin extends AsyncDisposable {
  readonly port: number;
  readonly host: string;
  /** `ws://host:port`, what a worker's `III_URL` should be. */
  readonly url: string;
  /** Every event, as `on("event", (e: StandinEvent) => …)`. */
  readonly events: EventEmitter<{ event: [StandinEvent] }>;
  readonly registrations: RegistrationFeed;
  functions(): FunctionRegistration[];
  workers(): WorkerInfo[];
  /** Resolves when `functionId` is registered (at once if it already is). */
  waitForFunction(functionId: string, options?: { timeoutMs?: number }): Promise<FunctionRegistration>;
  /** Sends `invokefunction` to the worker that registered `functionId` and resolves with its `result`. */
  invoke(functionId: string, payload: unknown, options?: { timeoutMs?: number }): Promise<unknown>;
  close(): Promise<void>;
}

interface PendingInvocation {
  functionId: string;
  workerId: string;
  startedAt: number;
  timer: NodeJS.Timeout;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
}

interface Connection {
  info: WorkerInfo;
  socket: WebSocket;
}

/**
 * Starts a local stand-in for the iii engine. It is NOT the iii engine: it keeps an in-memory table of the
 * functions workers register, routes invocations to them (from `invoke` or from another worker), and answers
 * `engine::workers::register` and `engine::functions::list`. Triggers are recorded but never fired; there are
 * no queues, state, streams, channels, namespaces or auth.
 */
export async function startEngineStandin(options: EngineStandinOptions = {}): Promise<EngineStandin> {
  const host = options.host ?? "127.0.0.1";
  const invocationTimeoutMs = options.invocationTimeoutMs ?? DEFAULT_INVOCATION_TIMEOUT_MS;
  const server = new WebSocketServer({ host, port: options.port ?? DEFAULT_ENGINE_PORT });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
  const address = server.address() as AddressInfo;

  const closed = new AbortController();
  const events = new EventEmitter<{ event: [StandinEvent] }>();
  const connections = new Map<string, Connection>();
  const functions = new Map<string, FunctionRegistration>();
  const pending = new Map<string, PendingInvocation>();
  const telemetrySockets = new Set<WebSocket>();
  const registrations = new RegistrationFeed(() => [...functions.values()], closed.signal);
  const emit = (event: StandinEvent): void => {
    events.emit("event", event);
  };

  const send = (connection: Connection, message: EngineToWorker): void => {
    if (connection.socket.readyState === WebSocket.OPEN) connection.socket.send(encodeEngineMessage(message));
  };

  const invoke = (functionId: string, payload: unknown, timeoutMs = invocationTimeoutMs): Promise<unknown> => {
    const registration = functions.get(functionId);
    const owner = registration && connections.get(registration.workerId);
    if (!registration || !owner) {
      return Promise.reject(
        new InvocationFailedError(functionId, {
          code: "function_not_found",
          message: `no connected worker has registered ${functionId}`,
        }),
      );
    }
    const invocationId = randomUUID();
    const startedAt = performance.now();
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        settle(invocationId, {
          error: { code: "timeout", message: `no result from the worker within ${timeoutMs} ms` },
        });
      }, timeoutMs);
      pending.set(invocationId, { functionId, workerId: owner.info.workerId, startedAt, timer, resolve, reject });
      send(owner, { type: "invokefunction", invocation_id: invocationId, function_id: functionId, data: payload });
    });
  };

  const settle = (invocationId: string, outcome: { result?: unknown; error?: ErrorBody }): void => {
    const invocation = pending.get(invocationId);
    if (!invocation) return;
    pending.delete(invocationId);
    clearTimeout(invocation.timer);
    const durationMs = performance.now() - invocation.startedAt;
    const base = { kind: "invoked" as const, functionId: invocation.functionId, invocationId, durationMs };
    if (outcome.error) {
      emit({ ...base, error: outcome.error });
      invocation.reject(new InvocationFailedError(invocation.functionId, outcome.error));
    } else {
      emit({ ...base, result: outcome.result });
      invocation.resolve(outcome.result);
    }
  };

  /** Invocations a worker sends to the engine: engine built-ins, or another worker's function. */
  const handleWorkerInvoke = (
    connection: Connection,
    message: Extract<WorkerToEngine, { type: "invokefunction" }>,
  ): void => {
    const reply = (outcome: { result?: unknown; error?: ErrorBody }): void => {
      if (!message.invocation_id) return;
      send(connection, {
        type: "invocationresult",
        invocation_id: message.invocation_id,
        function_id: message.function_id,
        ...outcome,
      });
    };
    if (message.function_id === "engine::workers::register") {
      const data = (message.data ?? {}) as Record<string, unknown>;
      const text = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);
      const info = connection.info;
      const name = text(data.name);
      const runtime = text(data.runtime);
      const sdkVersion = text(data.version);
      const isolation = text(data.isolation);
      if (isolation !== undefined) info.isolation = isolation;
      if (name !== undefined) info.name = name;
      if (runtime !== undefined) info.runtime = runtime;
      if (sdkVersion !== undefined) info.sdkVersion = sdkVersion;
      emit({ kind: "worker-identified", workerId: info.workerId, name, runtime, sdkVersion, ...(isolation ? { isolation } : {}) });
      reply({ result: null });
      return;
    }
    if (message.function_id === "engine::functions::list") {
      reply({
        result: {
          functions: [...functions.values()].map((f) => ({ function_id: f.functionId, description: f.description })),
        },
      });
      return;
    }
    invoke(message.function_id, message.data).then(
      (result) => reply({ result }),
      (error: unknown) => {
        const failed = error instanceof InvocationFailedError ? error : undefined;
        reply({
          error: { code: failed?.code ?? "invocation_failed", message: (error as Error).message },
        });
      },
    );
  };

  const handleMessage = (connection: Connection, message: WorkerToEngine): void => {
    const workerId = connection.info.workerId;
    switch (message.type) {
      case "registerfunction": {
        const registration: FunctionRegistration = { functionId: message.id, workerId, registeredAt: new Date() };
        if (typeof message.description === "string") registration.description = message.description;
        functions.set(message.id, registration);
        emit({ kind: "function-registered", workerId, functionId: message.id });
        registrations.emit("registered", registration);
        return;
      }
      case "unregisterfunction": {
        const registration = functions.get(message.id);
        if (registration?.workerId !== workerId) return;
        functions.delete(message.id);
        emit({ kind: "function-unregistered", workerId, functionId: message.id });
        registrations.emit("unregistered", registration);
        return;
      }
      case "invokefunction":
        handleWorkerInvoke(connection, message);
        return;
      case "invocationresult": {
        const invocation = pending.get(message.invocation_id);
        // Only the worker that was asked may answer.
        if (invocation?.workerId !== workerId) return;
        settle(message.invocation_id, message.error ? { error: message.error } : { result: message.result });
        return;
      }
      case "registertrigger":
        emit({
          kind: "trigger-registered",
          workerId,
          triggerId: message.id,
          triggerType: message.trigger_type,
          functionId: message.function_id,
        });
        return;
      case "ping":
        send(connection, { type: "pong" });
        return;
      default:
        // registertriggertype, registerservice, reattach, pong, unregister*: accepted and ignored.
        return;
    }
  };

  server.on("connection", (socket, request) => {
    // The SDK's OpenTelemetry exporter opens a second socket on `/otel` for spans, metrics and logs. The real
    // engine ingests them; the stand-in accepts and discards them so the exporter does not reconnect forever.
    if (new URL(request.url ?? "/", "ws://stand-in").pathname.endsWith("/otel")) {
      telemetrySockets.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => telemetrySockets.delete(socket));
      return;
    }
    const workerId = randomUUID();
    const remoteAddress = `${request.socket.remoteAddress ?? "?"}:${request.socket.remotePort ?? "?"}`;
    const connection: Connection = { info: { workerId, remoteAddress }, socket };
    connections.set(workerId, connection);
    emit({ kind: "worker-connected", workerId, remoteAddress });
    // The engine greets each connection with its id; the SDK keeps it for `reattach` after a reconnect.
    send(connection, { type: "workerregistered", worker_id: workerId, reattach_token: randomUUID() });

    socket.on("message", (data, isBinary) => {
      if (isBinary) {
        emit({ kind: "protocol-error", workerId, message: "binary frame ignored" });
        return;
      }
      let message: WorkerToEngine | null;
      try {
        message = parseWorkerMessage(data.toString());
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        emit({ kind: "protocol-error", workerId, message: error.message });
        return;
      }
      if (message) handleMessage(connection, message);
    });
    socket.on("error", () => {
      // A reset from the worker is followed by "close", which does the cleanup.
    });
    socket.on("close", () => {
      connections.delete(workerId);
      const dropped: string[] = [];
      for (const [functionId, registration] of functions) {
        if (registration.workerId !== workerId) continue;
        functions.delete(functionId);
        dropped.push(functionId);
        registrations.emit("unregistered", registration);
      }
      for (const [invocationId, invocation] of pending) {
        if (invocation.workerId !== workerId) continue;
        settle(invocationId, {
          error: { code: "worker_disconnected", message: "the worker disconnected before answering" },
        });
      }
      emit({ kind: "worker-disconnected", workerId, functionIds: dropped });
    });
  });

  const waitForFunction = (functionId: string, waitOptions: { timeoutMs?: number } = {}) => {
    const existing = functions.get(functionId);
    if (existing) return Promise.resolve(existing);
    return new Promise<FunctionRegistration>((resolve, reject) => {
      const cleanup = (): void => {
        registrations.off("registered", onRegistered);
        closed.signal.removeEventListener("abort", onClosed);
        if (timer) clearTimeout(timer);
      };
      const onRegistered = (registration: FunctionRegistration): void => {
        if (registration.functionId !== functionId) return;
        cleanup();
        resolve(registration);
      };
      const onClosed = (): void => {
        cleanup();
        reject(new Error(`engine stand-in closed while waiting for ${functionId}`));
      };
      const timer =
        waitOptions.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              cleanup();
              reject(new Error(`${functionId} was not registered within ${waitOptions.timeoutMs} ms`));
            }, waitOptions.timeoutMs);
      registrations.on("registered", onRegistered);
      closed.signal.addEventListener("abort", onClosed);
    });
  };

  const close = async (): Promise<void> => {
    if (closed.signal.aborted) return;
    closed.abort();
    for (const [invocationId] of pending) {
      settle(invocationId, { error: { code: "engine_closed", message: "the engine stand-in was closed" } });
    }
    for (const { socket } of connections.values()) socket.terminate();
    for (const socket of telemetrySockets) socket.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };

  return {
    port: address.port,
    host,
    url: `ws://${host.includes(":") ? `[${host}]` : host}:${address.port}`,
    events,
    registrations,
    functions: () => [...functions.values()],
    workers: () => [...connections.values()].map((c) => ({ ...c.info })),
    waitForFunction,
    invoke: (functionId, payload, invokeOptions) => invoke(functionId, payload, invokeOptions?.timeoutMs),
    close,
    [Symbol.asyncDispose]: close,
  };
}
