// A guest that opens many connections to peers that never read must not make the stack hold a full receive
// buffer for each: the receive windows share one budget (tcpReceiveBudgetBytes). Measured as the stack
// process's live ArrayBuffer memory (the host sockets' unwritten data) once every flow is stuck.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { afterEach, describe, expect, test } from "vitest";
import { ipToString } from "../src/index.js";
import { TCP_RECEIVE_FLOOR_BYTES } from "../src/stack/tcp-sockets.js";
import { harnessUnavailable, startGuest } from "./harness.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP receive-budget harness test: ${skip}`);

const MiB = 1024 * 1024;
const FLOWS = 16;
const CEILING = 1 * MiB;
const BUDGET = 2 * MiB;
/** What each flow offers: more than the host kernel's socket buffers take (tcp_wmem's 4 MiB + the peer's receive buffer) plus our window, so every flow ends stalled with its window full. */
const OFFER = 8 * MiB;

// A full collection before each reading: arrayBuffers also counts frames and chunks already handled but not yet
// collected, and how many of those are left depends on when V8 last ran.
v8.setFlagsFromString("--expose-gc");
const collectGarbage = vm.runInNewContext("gc") as () => void;
const liveArrayBuffers = (): number => {
  collectGarbage();
  return process.memoryUsage().arrayBuffers;
};

/** A loopback server that accepts and never reads. */
async function deafServer(): Promise<{ port: number; sockets: net.Socket[]; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (s) => {
    s.on("error", () => {});
    sockets.push(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Opens FLOWS connections from the guest to a peer that never reads, each offering OFFER bytes, waits until no
 * flow moves (every window full: how long that takes depends on the machine, so it is waited for, not timed), and
 * returns the live ArrayBuffer memory the stack's process gained: the host sockets' unwritten data.
 */
async function stuckBytes(limits: Record<string, number>): Promise<number> {
  const deaf = await deafServer();
  const env = await startGuest({ mtu: 1500, policy: { hostPorts: [deaf.port] }, limits });
  cleanups.push(async () => {
    await env.close();
    await deaf.close();
  });
  const gw = ipToString(env.stack.addresses.gatewayIp);
  // The guest's program ends when the test has measured (it writes this file).
  const doneDir = mkdtempSync(join(tmpdir(), "iii-receive-budget-"));
  const done = join(doneDir, "done");
  cleanups.push(async () => rmSync(doneDir, { recursive: true, force: true }));
  const script =
    `const net=require('net');let open=0;` +
    `for(let i=0;i<${FLOWS};i++){const s=net.connect(${deaf.port},'${gw}',()=>{open++;s.write(Buffer.alloc(${OFFER},97));if(open===${FLOWS})console.log('open')});s.on('error',e=>console.log(e.code))}` +
    `setInterval(()=>{if(require('fs').existsSync(${JSON.stringify(done)}))process.exit(0)},100);setTimeout(()=>process.exit(0),60000);`;
  const before = liveArrayBuffers();
  const run = env.guest.exec(["node", "-e", script], { timeoutMs: 90_000 });
  const moved = () => env.stack.snapshot().reduce((sum, f) => sum + f.bytesFromGuest, 0);
  let last = -1;
  let stillSince = performance.now();
  const deadline = performance.now() + 45_000;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const now = moved();
    if (now !== last || env.stack.snapshot().length < FLOWS) {
      last = now;
      stillSince = performance.now();
    } else if (performance.now() - stillSince > 1_500) break;
    if (performance.now() > deadline) throw new Error(`the flows never stalled (${(last / MiB).toFixed(1)} MiB moved)`);
  }
  const held = liveArrayBuffers() - before;
  expect(deaf.sockets.length).toBe(FLOWS);
  writeFileSync(done, "");
  const r = await run;
  expect(r.stdout).toContain("open");
  return held;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe.skipIf(skip)("receive windows share one budget (real Linux guest)", () => {
  test(`${FLOWS} flows to a peer that never reads hold about the budget, not a full window each`, async () => {
    const held = await stuckBytes({ tcpReceiveBufferBytes: CEILING, tcpReceiveBudgetBytes: BUDGET });
    // A window once advertised is never shrunk, so each flow may hold its share from when it opened: the i-th
    // open flow's is min(CEILING, BUDGET / i), at least the stack's floor. Flows opened one after another, each
    // filled before the next, sum to ~5.8 MiB here (opened at once, to the budget); without the budget every
    // flow holds a full window (16 MiB). Plus 2 MiB for the rest of the process.
    const worstCase = Array.from({ length: FLOWS }, (_, i) => Math.max(TCP_RECEIVE_FLOOR_BYTES, Math.min(CEILING, BUDGET / (i + 1)))).reduce((a, b) => a + b, 0);
    console.log(`${FLOWS} stuck flows, ${BUDGET / MiB} MiB budget: ${(held / MiB).toFixed(1)} MiB held by the stack (bound ${((worstCase + 2 * MiB) / MiB).toFixed(1)})`);
    expect(held).toBeLessThan(worstCase + 2 * MiB);
  }, 90_000);
});
