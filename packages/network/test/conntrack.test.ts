import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ipToString } from "../src/index.js";
import { harnessUnavailable, startGuest } from "./harness.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP conntrack harness tests: ${skip}`);
const script = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const CONNECTIONS = 500;
const BYTES = 1024 * 1024;

describe.skipIf(skip)(`${CONNECTIONS} concurrent guest connections`, () => {
  let server: ChildProcess;
  let port: number;
  let env: Awaited<ReturnType<typeof startGuest>>;

  beforeAll(async () => {
    server = spawn(process.execPath, [script("./host/pattern-server.mjs"), String(BYTES)], { stdio: ["ignore", "pipe", "inherit"] });
    const [line] = (await once(server.stdout!, "data")) as [Buffer];
    port = Number(line.toString().trim());
    env = await startGuest({ policy: { hostPorts: [port] }, limits: { timeWaitMs: 500 } });
  });
  afterAll(async () => {
    await env?.close();
    if (server && server.exitCode === null) {
      server.kill("SIGKILL");
      await once(server, "close");
    }
  });

  test("each transfers 1 MiB byte-exact; the tracker shows them all, then drains to 0", async () => {
    const gw = ipToString(env.stack.addresses.gatewayIp);
    let peak = 0;
    let peakEstablished = 0;
    const sampler = setInterval(() => {
      const snap = env.stack.snapshot().filter((f) => f.protocol === "tcp" && f.remotePort === port);
      peak = Math.max(peak, snap.length);
      peakEstablished = Math.max(peakEstablished, snap.filter((f) => f.state !== "CONNECTING" && f.state !== "SYN_RECEIVED").length);
    }, 100);
    const t0 = performance.now();
    const r = await env.guest.exec(
      ["sh", "-c", `ulimit -n 4096; exec ${process.execPath} ${script("./guest/many-fetch.mjs")} ${gw} ${port} ${CONNECTIONS} ${BYTES}`],
      { timeoutMs: 150_000 },
    );
    clearInterval(sampler);
    const secs = (performance.now() - t0) / 1000;
    console.log(`${CONNECTIONS} x 1 MiB: ${secs.toFixed(1)} s, tracker peak ${peak} (${peakEstablished} past the handshake)`);
    expect(JSON.parse(r.stdout.trim() || "{}")).toEqual({ ok: CONNECTIONS, bad: 0, errors: {} });
    expect(peak).toBeGreaterThanOrEqual(CONNECTIONS * 0.8);
    const deadline = Date.now() + 15_000;
    while (env.stack.tracker.count("tcp") > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100));
    expect(env.stack.snapshot().filter((f) => f.protocol === "tcp")).toEqual([]);
    expect(env.stack.counters.drops["internal-error"]).toBeUndefined();
  }, 200_000);
});
