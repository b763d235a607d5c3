// The host holds a guest to the credit it granted (security review s14 #7): data past a stream's window closes
// that stream instead of being buffered without bound while its consumer is paused.
import { describe, expect, it } from "vitest";
import type { Socket } from "node:net";
import type { Readable } from "node:stream";
import { ControlChannel } from "./channel.js";
import { HostControl } from "./host.js";
import { encodeFrame, FrameType, INITIAL_WINDOW_BYTES, MAX_DATA_CHUNK_BYTES } from "./frame.js";
import type { Message } from "./messages.js";
import { afterThisTest, socketPair } from "./socket-pair.test-helper.js";

/** CreditedReadable's highWaterMark: what a paused Readable holds after its credit was already returned. */
const READABLE_HWM = 256 * 1024;


/** A host and a guest: the guest's ControlChannel for honest traffic, its socket for frames that ignore credit. */
async function pair() {
  const [hostSock, guestSock] = await socketPair();
  const host = HostControl.attach(hostSock);
  const errors: Error[] = [];
  host.on("error", (e) => errors.push(e));
  const guest = new ControlChannel(guestSock);
  const received: Message[] = [];
  guest.on("message", (m: Message) => received.push(m));
  afterThisTest(() => host.close());
  return { host, guest, guestSock, errors, received };
}

/** Writes `total` bytes of STDOUT frames on `stream` straight to the socket, credit or not; samples after each. */
async function flood(socket: Socket, stream: number, total: number, sample: () => void): Promise<void> {
  const frame = encodeFrame({ type: FrameType.STDOUT, stream, payload: new Uint8Array(MAX_DATA_CHUNK_BYTES).fill(0x41) });
  for (let sent = 0; sent < total; sent += MAX_DATA_CHUNK_BYTES) {
    if (!socket.write(frame)) await new Promise((r) => socket.once("drain", r));
    if (sent % (1024 * 1024) === 0) {
      await new Promise((r) => setImmediate(r));
      sample();
    }
  }
  // Let the host read what is still in the socket.
  await new Promise((r) => setTimeout(r, 50));
  sample();
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 250 && !condition(); i++) await new Promise((r) => setTimeout(r, 20));
  if (!condition()) throw new Error(`timed out waiting for ${what}`);
}

async function readAll(readable: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of readable) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("credit enforcement on the host", () => {
  it("closes an exec stream whose guest ignores credit while the consumer is paused; the rest keeps working", async () => {
    const { host, guest, guestSock, errors, received } = await pair();
    const victim = host.exec({ argv: ["flood"] });
    const other = host.exec({ argv: ["honest"] });
    victim.stdout.pause();
    let held = 0;
    const sample = () => (held = Math.max(held, victim.stdout.readableLength + victim.stderr.readableLength));

    await flood(guestSock, victim.stream, 64 * 1024 * 1024, sample);

    // What the host holds is the window (never credited back) plus the Readable's own buffer (credited): bounded.
    expect(held).toBeLessThanOrEqual(INITIAL_WINDOW_BYTES + READABLE_HWM);
    const exit = await victim.exit;
    expect(exit.code).toBe(-1);
    expect(exit.error).toMatch(/^CREDIT_EXCEEDED: .*stream \d+ past its credit window/);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(new RegExp(`stream ${victim.stream} past its credit window`));
    // The command is killed in case init still runs it; its output ends after what was within the window.
    await until(() => received.some((m) => m.type === "SIGNAL" && m.stream === victim.stream && m.signal === "SIGKILL"), "SIGKILL");
    victim.stdout.resume();
    expect((await readAll(victim.stdout)).length).toBeLessThanOrEqual(INITIAL_WINDOW_BYTES + READABLE_HWM);

    // The channel, another exec and the workload's output still work.
    await guest.sendData(other.stream, "STDOUT", Buffer.from("still here"));
    guest.send({ type: "EXIT", stream: other.stream, code: 0, signal: null, timedOut: false });
    expect((await readAll(other.stdout)).toString()).toBe("still here");
    expect((await other.exit).code).toBe(0);
    await guest.sendData(0, "STDOUT", Buffer.from("workload line\n"));
    const line = await new Promise<Buffer>((r) => host.workloadStdout.once("data", r));
    expect(line.toString()).toBe("workload line\n");
    guest.on("message", (m: Message) => m.type === "PING" && guest.send({ type: "PONG", stream: 0, nonce: m.nonce }));
    expect(await host.ping(2000)).toBeGreaterThanOrEqual(0);
    expect(errors).toHaveLength(1);
  });

  it("ends the workload's output (stream 0) when the guest ignores its credit; control and execs go on", async () => {
    const { host, guest, guestSock, errors } = await pair();
    host.workloadStdout.pause();
    let held = 0;
    const sample = () => (held = Math.max(held, host.workloadStdout.readableLength + host.workloadStderr.readableLength));

    await flood(guestSock, 0, 64 * 1024 * 1024, sample);

    expect(held).toBeLessThanOrEqual(INITIAL_WINDOW_BYTES + 2 * READABLE_HWM);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/stream 0 past its credit window/);
    host.workloadStdout.resume();
    expect((await readAll(host.workloadStdout)).length).toBeLessThanOrEqual(INITIAL_WINDOW_BYTES + READABLE_HWM);

    guest.send({ type: "WORKLOAD_EXIT", stream: 0, code: 0, signal: null, timedOut: false, generation: 1, oomKilled: false, requested: false, escalated: false });
    expect((await host.workloadExit).code).toBe(0);
    const run = host.exec({ argv: ["after"] });
    await guest.sendData(run.stream, "STDERR", Buffer.from("exec after"));
    guest.send({ type: "EXIT", stream: run.stream, code: 0, signal: null, timedOut: false });
    expect((await readAll(run.stderr)).toString()).toBe("exec after");
    expect((await run.exit).code).toBe(0);
    expect(errors).toHaveLength(1);
  });

  it("leaves an honest guest alone: many MiB on an exec and on stream 0 with consumers that pause", async () => {
    const { host, guest, errors } = await pair();
    const run = host.exec({ argv: ["cat", "big"] });
    const total = 32 * 1024 * 1024;
    const pattern = (n: number, seed: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
      return b;
    };
    const out = pattern(total, 1);
    const err = pattern(total / 4, 7);
    const wl = pattern(total / 2, 3);

    // Consumers that stop now and then: the credit comes back late, never early.
    const collect = (readable: Readable) => {
      const chunks: Buffer[] = [];
      let n = 0;
      readable.on("data", (c: Buffer) => {
        chunks.push(c);
        if (++n % 16 === 0) {
          readable.pause();
          setTimeout(() => readable.resume(), 2);
        }
      });
      return chunks;
    };
    const outChunks = collect(run.stdout);
    const errChunks = collect(run.stderr);
    const wlChunks = collect(host.workloadStdout);

    await Promise.all([guest.sendData(run.stream, "STDOUT", out), guest.sendData(run.stream, "STDERR", err), guest.sendData(0, "STDOUT", wl)]);
    guest.send({ type: "EXIT", stream: run.stream, code: 0, signal: null, timedOut: false });
    expect((await run.exit).code).toBe(0);
    await until(() => Buffer.concat(wlChunks).length === wl.length, "the workload's output");
    await until(() => run.stdout.readableEnded && run.stderr.readableEnded, "the exec's output to end");
    expect(Buffer.concat(outChunks).equals(out)).toBe(true);
    expect(Buffer.concat(errChunks).equals(err)).toBe(true);
    expect(Buffer.concat(wlChunks).equals(wl)).toBe(true);
    expect(errors).toEqual([]);
  });
});
