import { registerWorker } from "iii-sdk";

const url = process.env.III_URL ?? "ws://localhost:49134";

const iii = registerWorker(url, { workerName: process.env.III_WORKER_NAME ?? "hello-worker" });

iii.registerFunction(
  "hello::greet",
  async (input) => {
    const name = typeof input?.name === "string" && input.name !== "" ? input.name : "world";
    return { message: `Hello, ${name}!`, from: "hello-worker", pid: process.pid };
  },
  { description: "Returns a greeting for input.name" },
);

// The SDK queues nothing while disconnected: registrations are (re)sent on every connect, so one line is enough.
console.log(`registered hello::greet (engine ${url})`);

// The SDK's socket keeps the process alive and reconnects on its own; shut down cleanly on a signal so a
// dev-mode restart does not leave a half-open connection on the engine.
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    iii.shutdown().finally(() => process.exit(0));
  });
}
