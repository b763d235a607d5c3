import { WebSocket } from "ws";
import { afterEach, describe, expect, it } from "vitest";
import { InvocationFailedError, startEngineStandin, type EngineStandin, type StandinEvent } from "../src/index.js";
import { prepareHelloWorker, runHelloWorker, type RunningWorker } from "./hello-worker.js";

describe("engine stand-in with the real iii-sdk hello worker", () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    cleanups.length = 0;
  });

  async function setup(): Promise<{ standin: EngineStandin; worker: RunningWorker; events: StandinEvent[] }> {
    const standin = await startEngineStandin({ port: 0 });
    cleanups.push(() => standin.close());
    const events: StandinEvent[] = [];
    standin.events.on("event", (event) => events.push(event));
    const copy = await prepareHelloWorker();
    cleanups.push(() => copy[Symbol.asyncDispose]());
    const worker = runHelloWorker(copy.dir, standin.url);
    cleanups.push(() => worker.stop());
    return { standin, worker, events };
  }

  it("sees hello::greet registered and gets the greeting back from an invocation", async () => {
    const { standin, worker, events } = await setup();
    const registration = await standin.waitForFunction("hello::greet", { timeoutMs: 20_000 });
    await worker.waitForOutput(/registered hello::greet/);

    expect(registration.functionId).toBe("hello::greet");
    expect(registration.description).toBe("Returns a greeting for input.name");
    expect(events[0]).toMatchObject({ kind: "worker-connected" });
    expect(events).toContainEqual(expect.objectContaining({ kind: "function-registered", functionId: "hello::greet" }));

    const result = await standin.invoke("hello::greet", { name: "stand-in" });
    expect(result).toMatchObject({ message: "Hello, stand-in!", from: "hello-worker", pid: worker.child.pid });
    const invoked = events.find((e) => e.kind === "invoked");
    expect(invoked).toMatchObject({ functionId: "hello::greet", result: { message: "Hello, stand-in!" } });

    // The SDK reports who it is through engine::workers::register right after connecting.
    await expect.poll(() => standin.workers()[0]?.runtime).toBe("node");
    expect(standin.workers()[0]).toMatchObject({ name: "hello-worker", sdkVersion: "0.22.1" });
  });

  it("yields registrations through the async iterator and forgets them when the worker exits", async () => {
    const { standin, worker, events } = await setup();
    const iterator = standin.registrations[Symbol.asyncIterator]();
    const first = await iterator.next();
    expect(first.value).toMatchObject({ functionId: "hello::greet" });
    await iterator.return?.();

    expect(await worker.stop()).toBe(0);
    await expect.poll(() => standin.functions().length).toBe(0);
    expect(events).toContainEqual(expect.objectContaining({ kind: "worker-disconnected", functionIds: ["hello::greet"] }));
    await expect(standin.invoke("hello::greet", {})).rejects.toMatchObject({ code: "function_not_found" });
  });

  it("rejects an invocation of a function nobody registered", async () => {
    const standin = await startEngineStandin({ port: 0 });
    cleanups.push(() => standin.close());
    const error = await standin.invoke("nobody::home", {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvocationFailedError);
    expect(error).toMatchObject({ code: "function_not_found", functionId: "nobody::home" });
  });

  it("routes a worker's own invocation to another worker's function, and lists functions", async () => {
    const { standin } = await setup();
    await standin.waitForFunction("hello::greet", { timeoutMs: 20_000 });
    const caller = new WebSocket(standin.url);
    cleanups.push(async () => caller.close());
    const replies: Array<Record<string, unknown>> = [];
    caller.on("message", (data) => replies.push(JSON.parse(data.toString()) as Record<string, unknown>));
    await new Promise((resolve, reject) => caller.once("open", resolve).once("error", reject));
    const call = (n: number, functionId: string, data: unknown): void =>
      caller.send(
        JSON.stringify({ type: "invokefunction", invocation_id: `00000000-0000-4000-8000-00000000000${n}`, function_id: functionId, data }),
      );
    call(1, "hello::greet", { name: "peer" });
    call(2, "engine::functions::list", {});
    call(3, "nobody::home", {});
    await expect.poll(() => replies.filter((r) => r.type === "invocationresult").length).toBe(3);
    const byId = (n: number) => replies.find((r) => r.invocation_id === `00000000-0000-4000-8000-00000000000${n}`);
    expect(replies[0]).toMatchObject({ type: "workerregistered" });
    expect(byId(1)).toMatchObject({ function_id: "hello::greet", result: { message: "Hello, peer!" } });
    expect(byId(2)).toMatchObject({ result: { functions: [{ function_id: "hello::greet" }] } });
    expect(byId(3)).toMatchObject({ error: { code: "function_not_found" } });
  });

  it("the worker reconnects and re-registers when the stand-in restarts on the same port", async () => {
    const { standin: first } = await setup();
    await first.waitForFunction("hello::greet", { timeoutMs: 20_000 });
    const port = first.port;
    await first.close();
    const second = await startEngineStandin({ port });
    cleanups.push(() => second.close());
    // The SDK retries after ~1 s (±30 % jitter) and replays its registrations on the new connection.
    await second.waitForFunction("hello::greet", { timeoutMs: 15_000 });
    expect(await second.invoke("hello::greet", { name: "again" })).toMatchObject({ message: "Hello, again!" });
  });
});
