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
});
