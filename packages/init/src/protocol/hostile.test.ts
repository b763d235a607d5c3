// A hostile guest on the control channel (security review 2, s14 #3 and #4): guest root can take init's port fd
// and write any frame. A real HostControl on a unix socket pair; the guest side writes raw frames.
import { describe, expect, it } from "vitest";
import type { Socket } from "node:net";
import { ControlChannel, WRITE_HIGH_WATER_BYTES } from "./channel.js";
import { HostControl } from "./host.js";
import { encodeFrame, FrameDecoder, FrameType, ProtocolError } from "./frame.js";
import { frameToMessage, MAX_GUEST_TEXT_CHARS, MAX_READY_TIMINGS, type Message, type WorkloadExitMessage } from "./messages.js";
import { afterThisTest, socketPair } from "./socket-pair.test-helper.js";


const json = (type: number, stream: number, body: unknown) =>
  encodeFrame({ type, stream, payload: Buffer.from(typeof body === "string" ? body : JSON.stringify(body)) });

const GOOD_EXIT = { code: 0, signal: null, timedOut: false, generation: 0, oomKilled: false, requested: false, escalated: false };

async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  for (let t = 0; t < ms && !condition(); t += 10) await new Promise((r) => setTimeout(r, 10));
  if (!condition()) throw new Error(`timed out waiting for ${what}`);
}

describe("guest → host messages are checked field by field (review 2 #4)", () => {
  const decode = (type: keyof typeof FrameType, stream: number, body: unknown) =>
    frameToMessage({ type: FrameType[type], stream, payload: Buffer.from(JSON.stringify(body)) });
  const bad: Array<[keyof typeof FrameType, number, unknown]> = [
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, signal: { toString: 1 } }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, signal: "" }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, signal: "S".repeat(129) }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, error: { toString: 1 } }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, error: "e".repeat(MAX_GUEST_TEXT_CHARS + 1) }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, shellStatus: "127" }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, shellStatus: 1e9 }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, requested: 1 }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, escalated: "no" }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, requested: undefined }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, code: 1e300 }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, code: -2 }],
    ["WORKLOAD_EXIT", 0, { ...GOOD_EXIT, generation: -1 }],
    ["WORKLOAD_EXIT", 3, GOOD_EXIT],
    ["EXIT", 1, { code: 0, signal: [], timedOut: false }],
    ["EXIT", 1, { code: 0, signal: null, timedOut: false, error: 5 }],
    ["READY", 0, { protocol: 1, initVersion: "0.1.0", bootMs: 1, timings: { length: 1e9 } }],
    ["READY", 0, { protocol: 1, initVersion: "0.1.0", bootMs: 1, timings: [{ step: { toString: 1 }, ms: 1, status: "ok" }] }],
    ["READY", 0, { protocol: 1, initVersion: "0.1.0", bootMs: 1, timings: [{ step: "x", ms: "1", status: "ok" }] }],
    ["READY", 0, { protocol: 1, initVersion: "0.1.0", bootMs: 1, timings: [{ step: "x", ms: 1, status: "evil" }] }],
    ["READY", 0, { protocol: 1, initVersion: "0.1.0", bootMs: 1, timings: Array.from({ length: MAX_READY_TIMINGS + 1 }, () => ({ step: "x", ms: 0, status: "ok" })) }],
    ["READY", 0, { protocol: 1, initVersion: { toString: 1 }, bootMs: 1, timings: [] }],
    ["READY", 0, { protocol: 1, initVersion: "0.1.0", bootMs: Number.MAX_VALUE, timings: [] }],
    ["PING", 0, { nonce: -1 }],
    ["PING", 0, { nonce: 2 ** 60 }],
    ["LOG", 0, { level: "debug", message: "x" }],
    ["LOG", 0, { level: "info", message: "m".repeat(MAX_GUEST_TEXT_CHARS + 1) }],
    ["ERROR", 0, { code: "", message: "x" }],
    ["ERROR", 0, { code: "X", message: { toString: 1 } }],
    ["STARTED", 1, { pid: 0 }],
    ["WORKLOAD_STARTED", 0, { pid: 2, generation: 0.5 }],
  ];
  it.each(bad.map(([t, s, b], i) => [i, t, s, b] as const))("#%i %s on stream %i is a ProtocolError", (_i, type, stream, body) => {
    expect(() => decode(type, stream, body)).toThrow(ProtocolError);
  });

  it("keeps only the declared fields (nothing else the guest adds reaches the host)", () => {
    const m = decode("WORKLOAD_EXIT", 0, { ...GOOD_EXIT, signal: "SIGKILL", extra: { toString: 1 }, shellStatus: 127, error: "x" });
    expect(m).toEqual({ type: "WORKLOAD_EXIT", stream: 0, ...GOOD_EXIT, signal: "SIGKILL", shellStatus: 127, error: "x" });
  });
});

/** A host, and a guest that writes raw frames on its socket (an honest ControlChannel beside it answers PINGs). */
async function pair() {
  const [hostSock, guestSock] = await socketPair();
  const host = HostControl.attach(hostSock);
  const errors: Error[] = [];
  host.on("error", (e) => errors.push(e));
  afterThisTest(() => host.close());
  return { host, hostSock, guestSock, errors };
}

function answerPings(guestSock: Socket): ControlChannel {
  const guest = new ControlChannel(guestSock);
  guest.on("message", (m: Message) => m.type === "PING" && guest.send({ type: "PONG", stream: 0, nonce: m.nonce }));
  return guest;
}

describe("a hostile guest on the host's control channel", () => {
  it("a WORKLOAD_EXIT whose signal is {toString:1} is a logged protocol error, not an exit and not a crash (#4)", async () => {
    const { host, guestSock, errors } = await pair();
    answerPings(guestSock);
    let exit: WorkloadExitMessage | undefined;
    void host.workloadExit.then((m) => (exit = m));
    guestSock.write(json(FrameType.WORKLOAD_EXIT, 0, { ...GOOD_EXIT, signal: { toString: 1 } }));
    await until(() => errors.length > 0, "the protocol error");
    expect(errors[0]).toBeInstanceOf(ProtocolError);
    expect(errors[0]!.message).toMatch(/bad WORKLOAD_EXIT message: field "signal"/);
    // Whatever the host does with an exit's fields now holds: the forged one never got there.
    expect(exit).toBeUndefined();
    expect(await host.ping(2000)).toBeGreaterThanOrEqual(0);
    guestSock.write(json(FrameType.WORKLOAD_EXIT, 0, { ...GOOD_EXIT, code: 3 }));
    expect((await host.workloadExit).code).toBe(3);
    expect(errors).toHaveLength(1);
  });

  it("a malformed EXIT on an exec's stream ends that exec (BAD_MESSAGE) and kills it; the channel goes on", async () => {
    const { host, guestSock, errors } = await pair();
    const guest = answerPings(guestSock);
    const received: Message[] = [];
    guest.on("message", (m: Message) => received.push(m));
    const run = host.exec({ argv: ["x"] });
    guestSock.write(json(FrameType.EXIT, run.stream, { code: 0, signal: { toString: 1 }, timedOut: false }));
    const exit = await run.exit;
    expect(exit.code).toBe(-1);
    expect(exit.error).toMatch(/^BAD_MESSAGE: bad EXIT message: field "signal"/);
    await until(() => received.some((m) => m.type === "SIGNAL" && m.stream === run.stream && m.signal === "SIGKILL"), "SIGKILL");
    expect(errors).toHaveLength(1);
    expect(await host.ping(2000)).toBeGreaterThanOrEqual(0);
  });

  it("a PING flood from a guest that never reads queues a bounded backlog on the host (#3); the channel works after", async () => {
    const { host, hostSock, guestSock, errors } = await pair();
    guestSock.pause(); // never reads what the host writes
    const ping = json(FrameType.PING, 0, { nonce: 7 });
    const chunk = Buffer.concat(Array.from({ length: Math.floor(65536 / ping.length) }, () => ping));
    const total = 256 * 1024 * 1024;
    // Bail out well past the bound, so the test fails (without eating the machine's memory) when the defence is off.
    const bail = 16 * 1024 * 1024;
    const rss0 = process.memoryUsage().rss;
    let sent = 0;
    let maxQueued = 0;
    let stalled = false;
    while (sent < total && maxQueued < bail) {
      if (!guestSock.write(chunk)) {
        // The host stopped reading: the guest's writes block, as they would in the VM.
        const drained = await Promise.race([
          new Promise<boolean>((r) => guestSock.once("drain", () => r(true))),
          new Promise<boolean>((r) => setTimeout(() => r(false), 1000)),
        ]);
        if (!drained) {
          stalled = true;
          break;
        }
      }
      sent += chunk.length;
      maxQueued = Math.max(maxQueued, hostSock.writableLength);
      if (sent % (4 * 1024 * 1024) < chunk.length) await new Promise((r) => setImmediate(r));
    }
    maxQueued = Math.max(maxQueued, hostSock.writableLength);
    const rssGrowth = process.memoryUsage().rss - rss0;
    console.log(`guest sent ${(sent / 2 ** 20).toFixed(1)} MiB of PINGs, read nothing; host writableLength max ${(maxQueued / 2 ** 20).toFixed(2)} MiB, rss +${(rssGrowth / 2 ** 20).toFixed(0)} MiB, stalled=${stalled}`);
    // Past the mark by at most the replies to one read chunk (64 KiB of 20-byte PINGs → 64 KiB of PONGs).
    expect(maxQueued).toBeLessThanOrEqual(WRITE_HIGH_WATER_BYTES + 128 * 1024);
    expect(stalled).toBe(true);
    expect(host.channel.readingPaused).toBe(true);
    expect(rssGrowth).toBeLessThan(48 * 1024 * 1024);

    // The guest reads again: the backlog drains, the host resumes reading, and the channel still works.
    guestSock.removeAllListeners("drain");
    const decoder = new FrameDecoder();
    let pongs = 0;
    guestSock.on("data", (c: Buffer) => {
      for (const f of decoder.push(c)) {
        const m = frameToMessage(f);
        if (m.type === "PONG") pongs += 1;
        if (m.type === "PING") guestSock.write(json(FrameType.PONG, 0, { nonce: m.nonce }));
      }
    });
    guestSock.resume();
    expect(await host.ping(10_000)).toBeGreaterThanOrEqual(0);
    expect(pongs).toBeGreaterThan(0);
    await until(() => !host.channel.readingPaused, "reading to resume");
    expect(errors).toEqual([]);
  });

  it("CREDIT frames for stream ids the host never sent on keep no state on the host (rev6g: 2M of them took 194 MiB)", async () => {
    const { host, guestSock, errors } = await pair();
    answerPings(guestSock);
    // An honest exec's stdin window, which the guest's CREDIT keeps feeding.
    const run = host.exec({ argv: ["cat"] });
    run.stdin.write(Buffer.alloc(1000));
    await until(() => host.channel.sendWindows === 1, "the exec's send window");
    const credit = (stream: number) => {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(1);
      return encodeFrame({ type: FrameType.CREDIT, stream, payload: p });
    };
    const forged = 200_000;
    for (let first = 1_000; first < 1_000 + forged; first += 10_000) {
      const chunk = Buffer.concat(Array.from({ length: 10_000 }, (_, i) => credit(first + i)));
      await new Promise<void>((r) => guestSock.write(chunk, () => r()));
    }
    // Frames are read in order: once the PING is answered every CREDIT before it was handled.
    expect(await host.ping(10_000)).toBeGreaterThanOrEqual(0);
    expect(host.channel.sendWindows).toBe(1);
    expect(errors).toEqual([]);
  });
});
