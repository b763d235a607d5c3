// A guest that opens many connections to peers that never read must not make the stack hold a full receive
// buffer for each: the receive windows share one budget (tcpReceiveBudgetBytes). Measured as the stack
// process's ArrayBuffer memory (the host sockets' unwritten data) while 64 flows are stuck.
import net from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { ipToString } from "../src/index.js";
import { harnessUnavailable, startGuest } from "./harness.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP receive-budget harness test: ${skip}`);

const MiB = 1024 * 1024;
const FLOWS = 64;

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

async function stuckBytes(limits: Record<string, number>): Promise<number> {
  const deaf = await deafServer();
  const env = await startGuest({ mtu: 1500, policy: { hostPorts: [deaf.port] }, limits });
  cleanups.push(async () => {
    await env.close();
    await deaf.close();
  });
  const gw = ipToString(env.stack.addresses.gatewayIp);
  // Each flow offers 4 MiB: far more than the host's socket buffers and our receive window together take.
  const script =
    `const net=require('net');let open=0;` +
    `for(let i=0;i<${FLOWS};i++){const s=net.connect(${deaf.port},'${gw}',()=>{open++;s.write(Buffer.alloc(4*1024*1024,97));if(open===${FLOWS})console.log('open')});s.on('error',e=>console.log(e.code))}` +
    `setTimeout(()=>process.exit(0),6000);`;
  const before = process.memoryUsage().arrayBuffers;
  const run = env.guest.exec(["node", "-e", script], { timeoutMs: 20_000 });
  // Let the windows fill and the flows stall.
  await new Promise((r) => setTimeout(r, 4500));
  const held = process.memoryUsage().arrayBuffers - before;
  const r = await run;
  expect(r.stdout).toContain("open");
  expect(deaf.sockets.length).toBe(FLOWS);
  return held;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe.skipIf(skip)("receive windows share one budget (real Linux guest)", () => {
  test(`${FLOWS} flows to a peer that never reads hold about the budget, not a full buffer each`, async () => {
    const held = await stuckBytes({ tcpReceiveBufferBytes: 1 * MiB, tcpReceiveBudgetBytes: 8 * MiB });
    console.log(`${FLOWS} stuck flows, 8 MiB budget: ${(held / MiB).toFixed(1)} MiB held by the stack`);
    // The budget, plus at most the floor per flow while windows advertised earlier drain (never shrunk).
    expect(held).toBeLessThan(8 * MiB + FLOWS * 64 * 1024 + 4 * MiB);
  }, 60_000);
});
