import { describe, expect, it } from "vitest";
import { ControlChannel } from "./channel.js";
import { HostControl } from "./host.js";
import { INITIAL_WINDOW_BYTES } from "./frame.js";
import type { Message } from "./messages.js";
import { socketPair } from "./socket-pair.test-helper.js";


describe("ControlChannel flow control over a real unix socket", () => {
  it("stops a sender at the window until the reader consumes, without stalling other streams", async () => {
    const [hostSock, guestSock] = await socketPair();
    const host = HostControl.attach(hostSock);
    const guest = new ControlChannel(guestSock);
    const execs: number[] = [];
    guest.on("message", (m: Message) => {
      if (m.type === "EXEC") execs.push(m.stream);
    });
    const slow = host.exec({ argv: ["slow"] });
    const fast = host.exec({ argv: ["fast"] });
    for (let i = 0; i < 250 && execs.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect(execs).toEqual([slow.stream, fast.stream]);

    const big = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    let slowSent = false;
    const slowSend = guest.sendData(slow.stream, "STDOUT", big).then(() => (slowSent = true));
    // Nobody reads slow.stdout: the guest may only get INITIAL_WINDOW + the Readable's buffer across.
    await new Promise((r) => setTimeout(r, 200));
    expect(slowSent).toBe(false);
    expect(slow.stdout.readableLength).toBeLessThanOrEqual(INITIAL_WINDOW_BYTES + 256 * 1024);

    // The other stream still flows.
    await guest.sendData(fast.stream, "STDOUT", Buffer.from("fast output"));
    guest.send({ type: "EXIT", stream: fast.stream, code: 0, signal: null, timedOut: false });
    const fastChunks: Buffer[] = [];
    for await (const c of fast.stdout) fastChunks.push(c as Buffer);
    expect(Buffer.concat(fastChunks).toString()).toBe("fast output");
    expect((await fast.exit).code).toBe(0);

    // Reading releases credit and everything arrives intact and in order.
    const chunks: Buffer[] = [];
    slow.stdout.on("data", (c: Buffer) => chunks.push(c));
    await slowSend;
    guest.send({ type: "EXIT", stream: slow.stream, code: 3, signal: null, timedOut: false });
    expect((await slow.exit).code).toBe(3);
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
    host.close();
  });

  it("carries stdin with EOF, answers PING and reports READY", async () => {
    const [hostSock, guestSock] = await socketPair();
    const host = HostControl.attach(hostSock);
    const guest = new ControlChannel(guestSock);
    const received: Buffer[] = [];
    let eof = false;
    guest.on("message", (m: Message) => {
      if (m.type === "STDIN") {
        received.push(Buffer.from(m.data));
        guest.grant(m.stream, m.data.byteLength);
      } else if (m.type === "EOF") eof = true;
      else if (m.type === "PING") guest.send({ type: "PONG", stream: 0, nonce: m.nonce });
    });
    guest.send({ type: "READY", stream: 0, protocol: 1, initVersion: "x", bootMs: 1, timings: [] });
    expect((await host.ready).protocol).toBe(1);
    const run = host.exec({ argv: ["cat"] });
    const payload = Buffer.alloc(1024 * 1024, 0x5a);
    run.stdin.end(payload);
    await new Promise((r) => run.stdin.on("finish", r));
    for (let i = 0; i < 250 && !eof; i++) await new Promise((r) => setTimeout(r, 20));
    expect(eof).toBe(true);
    expect(Buffer.concat(received).equals(payload)).toBe(true);
    expect(await host.ping()).toBeGreaterThanOrEqual(0);
    host.close();
  });

  it("ends an exec the guest refused with code -1 and the guest's reason", async () => {
    const [hostSock, guestSock] = await socketPair();
    const host = HostControl.attach(hostSock);
    const guest = new ControlChannel(guestSock);
    guest.on("message", (m: Message) => {
      if (m.type === "EXEC") guest.send({ type: "ERROR", stream: m.stream, code: "STREAM_IN_USE", message: "busy" });
    });
    const run = host.exec({ argv: ["x"] });
    expect(await run.exit).toMatchObject({ code: -1, error: "STREAM_IN_USE: busy" });
    host.close();
  });

  it("rejects a guest with another protocol version", async () => {
    const [hostSock, guestSock] = await socketPair();
    const host = HostControl.attach(hostSock);
    new ControlChannel(guestSock).send({ type: "READY", stream: 0, protocol: 99, initVersion: "x", bootMs: 1, timings: [] });
    await expect(host.ready).rejects.toThrow(/protocol 99/);
    host.close();
  });
});
