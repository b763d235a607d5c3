import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { ipToString } from "../src/index.js";
import { encodeFrameLength } from "../src/transport/frame-decoder.js";
import { FrameServer } from "../src/transport/frame-server.js";
import { makeBlock, sha256OfRepeated, writeBlockFile } from "./fixtures.js";
import { harnessUnavailable, startGuest } from "./harness.js";

const skip = harnessUnavailable();
if (skip) console.warn(`SKIP input-loan harness test: ${skip}`);
const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms));

describe("reads from the VM into a reused buffer", () => {
  test("a frame view is overwritten by later reads unless a loan holds its buffer", async () => {
    const dir = mkdtempSync(join(tmpdir(), `iii-net-loans-${process.pid}-`));
    const kept: Array<{ view: Buffer; release?: () => void }> = [];
    let lendNext = false;
    const server = new FrameServer(70000, {
      onFrame: (f) => kept.push({ view: f, ...(lendNext ? { release: server.borrowInput()! } : {}) }),
      onBurstEnd: () => {},
      log: () => {},
    });
    const path = join(dir, "vm.sock");
    await server.listen(path);
    const client = net.connect(path);
    try {
      await new Promise<void>((r) => client.once("connect", () => r()));
      const send = async (byte: number) => {
        const f = Buffer.alloc(1000, byte);
        client.write(Buffer.concat([encodeFrameLength(f.length), f]));
        await settle();
      };
      await send(0xaa);
      expect(server.inputStats.readsIntoReusedBuffer).toBe(true);
      // Without a loan the next read lands in the same buffer: the kept view shows the new bytes.
      await send(0xbb);
      expect(kept[0]!.view.every((b) => b === 0xbb)).toBe(true);
      // With a loan, the next reads go elsewhere until it is returned.
      lendNext = true;
      await send(0xcc);
      lendNext = false;
      await send(0xdd);
      await send(0xee);
      expect(kept[2]!.view.every((b) => b === 0xcc)).toBe(true);
      expect(server.inputStats).toMatchObject({ readBuffersLent: 1, loansOut: 1 });
      kept[2]!.release!();
      kept[2]!.release!(); // returning twice is harmless
      expect(server.inputStats.loansOut).toBe(0);
      await send(0x11);
      expect(kept[5]!.view.every((b) => b === 0x11)).toBe(true);
    } finally {
      client.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skip)("guest → host bytes through a host peer that keeps stalling", () => {
  for (const mtu of [65520, 1500]) {
    test(`MTU ${mtu}: 48 MiB reach a host peer that pauses every 2 MiB, intact (views still queued keep their buffer)`, async () => {
      let received = 0;
      let lent = (): number => 0;
      const server = net.createServer({ allowHalfOpen: true }, (sock) => {
        const h = createHash("sha256");
        let n = 0;
        let pauseAt = 2 << 20;
        sock.on("error", () => {});
        sock.on("data", (d: Buffer) => {
          h.update(d);
          n += d.length;
          if (n >= pauseAt) {
            pauseAt += 2 << 20;
            // Stalled until the kernel's socket buffers are full and the stack's writes queue behind them
            // (a read buffer gets lent), or 300 ms: how long that takes depends on the buffers' autotuning.
            sock.pause();
            const before = lent();
            const t0 = Date.now();
            const poll = setInterval(() => {
              if (lent() > before || Date.now() - t0 > 300) {
                clearInterval(poll);
                sock.resume();
              }
            }, 5);
          }
        });
        sock.on("end", () => {
          received = n;
          sock.end(`${h.digest("hex")} ${n}\n`);
        });
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      const port = (server.address() as net.AddressInfo).port;
      const env = await startGuest({ mtu, policy: { hostPorts: [port] } });
      lent = () => env.stack.transportInput.readBuffersLent;
      try {
        const block = makeBlock(`loans-${mtu}`);
        const f = join(env.guest.dir, "block.bin");
        writeBlockFile(f, block);
        const gw = ipToString(env.stack.addresses.gatewayIp);
        const r = await env.guest.sh(`for i in $(seq 48); do cat ${f}; done | nc -N ${gw} ${port}`, { timeoutMs: 90_000 });
        expect(r.stdout.trim()).toBe(`${sha256OfRepeated(block, 48)} ${48 * block.length}`);
        expect(received).toBe(48 * block.length);
        await settle(200);
        const t = env.stack.transportInput;
        console.log(`MTU ${mtu}: read buffers lent ${t.readBuffersLent}, loans out at the end ${t.loansOut}`);
        expect(t.readsIntoReusedBuffer).toBe(true);
        // The stalls made views outlive their burst (the case under test), and every loan came back.
        expect(t.readBuffersLent).toBeGreaterThan(0);
        expect(t.loansOut).toBe(0);
      } finally {
        await env.close();
        await new Promise<void>((r) => server.close(() => r()));
      }
    }, 120_000);
  }

  test("hostile: 24 flows into host peers that never read pin at most 16 read buffers, and other flows still work", async () => {
    const stuck: net.Socket[] = [];
    const server = net.createServer((sock) => {
      sock.on("error", () => {});
      sock.pause();
      stuck.push(sock);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const echo = net.createServer((sock) => {
      sock.on("error", () => {});
      sock.pipe(sock);
    });
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    const echoPort = (echo.address() as net.AddressInfo).port;
    const env = await startGuest({ mtu: 65520, policy: { hostPorts: [port, echoPort] } });
    try {
      const gw = ipToString(env.stack.addresses.gatewayIp);
      // Each flow pushes 16 MiB at a peer that reads nothing: its host socket backs up for good.
      await env.guest.sh(`for i in $(seq 24); do (head -c 16M /dev/zero | timeout 10 nc ${gw} ${port}) >/dev/null 2>&1 & done; sleep 3`, { timeoutMs: 30_000 });
      const t = env.stack.transportInput;
      console.log(`24 stuck flows: ${stuck.length} accepted, loans out ${t.loansOut}, read buffers lent ${t.readBuffersLent}`);
      expect(stuck.length).toBe(24);
      expect(t.loansOut).toBeGreaterThan(0);
      expect(t.loansOut).toBeLessThanOrEqual(16);
      const r = await env.guest.sh(`echo still-moving | nc -N ${gw} ${echoPort}`, { timeoutMs: 10_000 });
      expect(r.stdout).toBe("still-moving\n");
    } finally {
      for (const s of stuck) s.destroy();
      await env.close();
      await new Promise<void>((r) => server.close(() => r()));
      await new Promise<void>((r) => echo.close(() => r()));
    }
  }, 60_000);
});
