import { connect, type Socket } from "node:net";
import { IiiError } from "../errors.js";

export interface QmpEvent {
  event: string;
  data?: unknown;
  /** ms since the client was created (monotonic). */
  atMs: number;
}

/**
 * A minimal QMP client (QEMU Machine Protocol: one JSON object per line). The qemu adapter uses it for
 * the shutdown reason (SHUTDOWN/RESET/GUEST_PANICKED events) and for `quit`.
 */
export class QmpClient {
  readonly events: QmpEvent[] = [];
  private socket: Socket | undefined;
  private buffer = "";
  private pending: Array<{ resolve: (value: unknown) => void; reject: (error: Error) => void }> = [];
  private listeners = new Set<(event: QmpEvent) => void>();
  private readonly origin = performance.now();
  private closedError: Error | undefined;

  /** Connects and negotiates capabilities; rejects when the socket cannot be reached within `timeoutMs`. */
  static async connect(path: string, timeoutMs = 5_000, isAlive: () => boolean = () => true): Promise<QmpClient> {
    const client = new QmpClient();
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        await client.open(path);
        break;
      } catch (error) {
        if (performance.now() > deadline || !isAlive()) throw error;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    await client.execute("qmp_capabilities");
    return client;
  }

  private open(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      let greeted = false;
      socket.setEncoding("utf8");
      socket.once("error", (error) => {
        if (!greeted) reject(error);
      });
      socket.on("data", (chunk: string) => {
        this.buffer += chunk;
        let newline: number;
        while ((newline = this.buffer.indexOf("\n")) >= 0) {
          const line = this.buffer.slice(0, newline).trim();
          this.buffer = this.buffer.slice(newline + 1);
          if (!line) continue;
          let message: Record<string, unknown>;
          try {
            message = JSON.parse(line) as Record<string, unknown>;
          } catch {
            continue;
          }
          if (!greeted && "QMP" in message) {
            greeted = true;
            this.socket = socket;
            socket.on("error", () => undefined);
            socket.on("close", () => this.onClose());
            resolve();
          } else if (typeof message.event === "string") {
            const event: QmpEvent = { event: message.event, data: message.data, atMs: performance.now() - this.origin };
            this.events.push(event);
            for (const listener of this.listeners) listener(event);
          } else if ("return" in message || "error" in message) {
            const waiter = this.pending.shift();
            if (!waiter) continue;
            if ("error" in message) {
              const err = message.error as { class?: string; desc?: string };
              waiter.reject(new IiiError("QmpFailed", `QMP ${err.class ?? "error"}: ${err.desc ?? line}`));
            } else {
              waiter.resolve(message.return);
            }
          }
        }
      });
      socket.once("close", () => {
        if (!greeted) reject(new IiiError("QmpFailed", "QMP socket closed before the greeting"));
      });
    });
  }

  private onClose(): void {
    this.closedError = new IiiError("QmpFailed", "QMP connection closed");
    for (const waiter of this.pending.splice(0)) waiter.reject(this.closedError);
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (!this.socket || this.closedError) return Promise.reject(this.closedError ?? new IiiError("QmpFailed", "QMP not connected"));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket!.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    });
  }

  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.socket?.destroy();
  }
}

/** The reason of the last SHUTDOWN event (or `guest-panic` after GUEST_PANICKED), if any. */
export function shutdownReason(events: readonly QmpEvent[]): string | undefined {
  let reason: string | undefined;
  for (const event of events) {
    if (event.event === "GUEST_PANICKED") reason = "guest-panic";
    if (event.event === "SHUTDOWN") {
      const data = event.data as { reason?: string } | undefined;
      if (reason !== "guest-panic" || data?.reason !== "guest-reset") reason = data?.reason ?? "unknown";
    }
  }
  return reason;
}
