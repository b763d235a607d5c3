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
 * Opens FLOWS connections from the guest to a peer that never reads, each offering OFFER bytes, and samples, once
 * they are all open, the live ArrayBuffer memory the stack's process gained (the host sockets' unwritten data) and
 * what the stack has promised, for 4 s: returns the largest of each. Flows with large windows fill them and stall
 * within seconds; flows held to the floor keep trickling as the host kernel takes a little more now and then, so
 * the bound must hold at every sample, not only at a stall.
 */
async function stuckBytes(limits: Record<string, number>): Promise<{ held: number; committed: number }> {
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
    // One after another, 300 ms apart: each flow is promised its window while fewer flows are open than at the
    // end (the order in which shares alone let the promises add up to ~3x the budget here).
    `for(let i=0;i<${FLOWS};i++)setTimeout(()=>{const s=net.connect(${deaf.port},'${gw}',()=>{open++;s.write(Buffer.alloc(${OFFER},97));if(open===${FLOWS})console.log('open')});s.on('error',e=>console.log(e.code))},300*i);` +
    `setInterval(()=>{if(require('fs').existsSync(${JSON.stringify(done)}))process.exit(0)},100);setTimeout(()=>process.exit(0),60000);`;
  const before = liveArrayBuffers();
  const run = env.guest.exec(["node", "-e", script], { timeoutMs: 90_000 });
  const deadline = performance.now() + 45_000;
  while (env.stack.snapshot().length < FLOWS) {
    if (performance.now() > deadline) throw new Error(`only ${env.stack.snapshot().length} of ${FLOWS} flows opened`);
    await new Promise((r) => setTimeout(r, 100));
  }
  let held = 0;
  let committed = 0;
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 500));
    held = Math.max(held, liveArrayBuffers() - before);
    committed = Math.max(committed, env.stack.tcpReceiveCommittedBytes);
  }
  expect(deaf.sockets.length).toBe(FLOWS);
  writeFileSync(done, "");
  const r = await run;
  expect(r.stdout).toContain("open");
  return { held, committed };
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe.skipIf(skip)("receive windows share one budget (real Linux guest)", () => {
  test(`${FLOWS} flows opened one by one to a peer that never reads hold at most the budget plus a floor each`, async () => {
    const { held, committed } = await stuckBytes({ tcpReceiveBufferBytes: CEILING, tcpReceiveBudgetBytes: BUDGET });
    // What all flows were promised is at most the budget plus one floor each (a window once advertised is never
    // shrunk, so a flow grows its window only from the budget's room). Shares alone promised the i-th flow
    // min(CEILING, BUDGET / i): ~5.8 MiB for flows opened one by one; without the budget every flow holds a full
    // window (16 MiB). Plus 2 MiB for the rest of the process.
    const bound = BUDGET + FLOWS * TCP_RECEIVE_FLOOR_BYTES;
    console.log(`${FLOWS} stuck flows opened one by one, ${BUDGET / MiB} MiB budget: ${(held / MiB).toFixed(1)} MiB held by the stack (bound ${((bound + 2 * MiB) / MiB).toFixed(2)}; promised ${(committed / MiB).toFixed(2)} MiB)`);
    expect(held).toBeLessThan(bound + 2 * MiB);
    expect(committed).toBeLessThanOrEqual(bound);
  }, 90_000);
});
