import { describe, expect, it } from "vitest";
import { runCli, type EngineStandin } from "../src/index.js";
import { prepareHelloWorker, runHelloWorker } from "./hello-worker.js";

function collect(): { lines: string[]; errors: string[]; io: { out: (l: string) => void; err: (l: string) => void } } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, io: { out: (l) => lines.push(l), err: (l) => errors.push(l) } };
}

describe("iii-engine-standin CLI", () => {
  it("prints registration and the invocation result, then exits 0 with --exit-after-invoke", async () => {
    await using copy = await prepareHelloWorker();
    const { lines, errors, io } = collect();
    let worker: ReturnType<typeof runHelloWorker> | undefined;
    const code = await runCli(
      ["--port", "0", "--invoke", "hello::greet", "--payload", '{"name":"cli"}', "--exit-after-invoke", "--timeout", "20000"],
      { ...io, onListening: (standin: EngineStandin) => (worker = runHelloWorker(copy.dir, standin.url)) },
    );
    await worker?.stop();
    expect(errors).toEqual([]);
    expect(code).toBe(0);
    expect(lines[0]).toMatch(/^iii engine stand-in \(not the real engine\) listening on ws:\/\/127\.0\.0\.1:\d+$/);
    expect(lines).toContainEqual(expect.stringMatching(/^worker connected [0-9a-f]{8} from /));
    expect(lines).toContainEqual(expect.stringMatching(/^function registered hello::greet \(worker [0-9a-f]{8}\)$/));
    const invoked = lines.find((l) => l.startsWith("invoked hello::greet → "));
    expect(JSON.parse(invoked!.slice("invoked hello::greet → ".length))).toMatchObject({ message: "Hello, cli!" });
  });

  it("prints one JSON object per line with --json", async () => {
    await using copy = await prepareHelloWorker();
    const { lines, io } = collect();
    let worker: ReturnType<typeof runHelloWorker> | undefined;
    const code = await runCli(["--port", "0", "--json", "--invoke", "hello::greet", "--exit-after-invoke"], {
      ...io,
      onListening: (standin: EngineStandin) => (worker = runHelloWorker(copy.dir, standin.url)),
    });
    await worker?.stop();
    expect(code).toBe(0);
    const events = lines.map((l) => JSON.parse(l) as { event: string; result?: unknown });
    expect(events[0]).toMatchObject({ event: "listening", standin: true });
    expect(events).toContainEqual(expect.objectContaining({ event: "function-registered", functionId: "hello::greet" }));
    expect(events.find((e) => e.event === "invoked")?.result).toMatchObject({ message: "Hello, world!" });
  });

  it("gives up with exit 1 when nothing registers the function before --timeout", async () => {
    const { errors, io } = collect();
    const code = await runCli(["--port", "0", "--invoke", "nobody::home", "--exit-after-invoke", "--timeout", "200"], io);
    expect(code).toBe(1);
    expect(errors.join("\n")).toContain("nobody::home was not invoked within 200 ms");
  });

  it("rejects bad arguments with exit 2", async () => {
    for (const argv of [["--payload", "{}"], ["--invoke", "x", "--payload", "{nope"], ["--port", "70000"], ["--bogus"]]) {
      const { errors, io } = collect();
      expect(await runCli(argv, io)).toBe(2);
      expect(errors[0]).toMatch(/^iii-engine-standin: /);
    }
  });

  it("stops cleanly when its signal is aborted", async () => {
    const controller = new AbortController();
    const { lines, io } = collect();
    const running = runCli(["--port", "0"], { ...io, signal: controller.signal, onListening: () => controller.abort() });
    expect(await running).toBe(0);
    expect(lines).toHaveLength(1);
  });
});
