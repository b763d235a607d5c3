/**
 * The runner's side of a handler component: one iii-sdk connection to the engine that registers the functions
 * the component lists, sends each invocation to the guest thread and its result back, and carries the
 * component's own `engine.trigger` calls. Payloads cross the WIT boundary as JSON text.
 */
import type { MessagePort, Worker } from "node:worker_threads";
import type { GuestMessage, HostMessage, WitResult } from "./protocol.js";

interface SdkClient {
  registerFunction(id: string, handler: (input: unknown) => Promise<unknown>, options?: { description?: string }): unknown;
  trigger(request: { function_id: string; payload: unknown }): Promise<unknown>;
  shutdown(): Promise<void>;
}

/**
 * Most characters of JSON text a component may hand the runner's main thread at once (an `engine.trigger` payload,
 * an `invoke` result). The main thread parses it, and it has no heap limit and owns the timers that enforce the
 * run's limits: 15 MB of `[{},{},…]` took seconds there and ~400 MB past the runner's memory bound (review rev6h).
 * 1 MiB parses in ~0.2 s into ~40 MB at worst, inside the runtime allowance the resident bound already grants.
 */
export const MAX_ENGINE_PAYLOAD_CHARS = 1024 * 1024;

export class EngineLink {
  private client: SdkClient | undefined;
  private readonly pending = new Map<number, { resolve(result: WitResult): void; reject(error: Error): void }>();
  private nextId = 1;
  private readonly own = new Set<string>();
  private closed = false;

  constructor(
    private readonly guest: Worker,
    private readonly url: string,
    private readonly workerName: string,
    private readonly log: (line: string) => void,
    /** The link cannot work (the SDK failed to load, the guest listed nothing usable): the run fails. */
    private readonly fail: (reason: string) => void,
  ) {}

  /** Handles the guest thread's engine messages; false for the ones that are not its business. */
  handle(m: GuestMessage): boolean {
    if (m.event === "serve") this.serve(m.functions).catch((error: Error) => this.fail(`engine: ${error.message}`));
    else if (m.event === "result") this.settle(m.id, m.result);
    else if (m.event === "trigger") void this.trigger(m.functionId, m.payload, m.flag, m.reply);
    else return false;
    return true;
  }

  private async connect(): Promise<SdkClient> {
    if (this.client) return this.client;
    // Loaded only when a component talks to the engine: preview 1 modules never pay for it.
    const { registerWorker } = (await import("iii-sdk")) as unknown as { registerWorker(url: string, options: object): SdkClient };
    this.client = registerWorker(this.url, { workerName: this.workerName, workerDescription: "iii WASM worker (component)" });
    return this.client;
  }

  private async serve(functions: string[]): Promise<void> {
    const client = await this.connect();
    for (const id of functions) {
      this.own.add(id);
      client.registerFunction(id, async (input) => {
        const result = await this.invoke(id, JSON.stringify(input ?? null));
        if (result.val.length > MAX_ENGINE_PAYLOAD_CHARS) {
          const what = result.tag === "err" ? "an error" : "a result";
          throw new Error(`${id} returned ${what} of ${result.val.length} characters (more than ${MAX_ENGINE_PAYLOAD_CHARS}): not passed on`);
        }
        if (result.tag === "err") throw new Error(result.val);
        try {
          return JSON.parse(result.val) as unknown;
        } catch {
          throw new Error(`${id} returned a result that is not JSON`);
        }
      });
    }
    this.log(`registered ${functions.join(", ")} with the engine at ${this.url}`);
  }

  private invoke(functionId: string, payload: string): Promise<WitResult> {
    if (this.closed) return Promise.reject(new Error("the WASM worker has ended"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.guest.postMessage({ event: "invoke", id, functionId, payload } satisfies HostMessage);
    });
  }

  private settle(id: number, result: WitResult): void {
    const waiter = this.pending.get(id);
    this.pending.delete(id);
    waiter?.resolve(result);
  }

  private async trigger(functionId: string, payload: string, flag: SharedArrayBuffer, reply: MessagePort): Promise<void> {
    let result: WitResult;
    try {
      // the component's thread is blocked in this call: its own function could only answer after it returns
      if (this.own.has(functionId)) throw new Error(`engine.trigger ${functionId}: a worker cannot trigger its own function (it would wait for itself)`);
      if (payload.length > MAX_ENGINE_PAYLOAD_CHARS) {
        throw new Error(`engine.trigger ${functionId}: the payload has ${payload.length} characters (more than ${MAX_ENGINE_PAYLOAD_CHARS}): not sent`);
      }
      const input = payload === "" ? null : (JSON.parse(payload) as unknown);
      const client = await this.connect();
      const output = await client.trigger({ function_id: functionId, payload: input });
      result = { tag: "ok", val: JSON.stringify(output ?? null) };
    } catch (error) {
      result = { tag: "err", val: error instanceof SyntaxError ? `engine.trigger ${functionId}: the payload is not JSON` : (error as Error).message };
    }
    reply.postMessage(result);
    reply.close();
    const cell = new Int32Array(flag);
    Atomics.store(cell, 0, 1);
    Atomics.notify(cell, 0);
  }

  /** The guest thread ended: invocations in flight fail, the engine connection closes. */
  async close(reason: string): Promise<void> {
    this.closed = true;
    for (const waiter of this.pending.values()) waiter.reject(new Error(`the WASM worker ended (${reason})`));
    this.pending.clear();
    await this.client?.shutdown().catch(() => undefined);
  }
}
