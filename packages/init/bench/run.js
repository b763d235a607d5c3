// Control-channel throughput: prints `name  ours  baseline  ratio`.
// Baselines: the same bytes through a raw unix socket (transport limit) and a
// plain Buffer copy (decoder limit). Run after `pnpm build`.
import { createServer, connect } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { protocol, HostControl } from "../dist/index.js";

const MiB = 1024 * 1024;
const total = 256 * MiB;
const chunk = Buffer.alloc(64 * 1024, 0x61);

function row(name, ours, baseline, unit) {
  console.log(`${name.padEnd(34)} ${ours.toFixed(0).padStart(6)} ${unit}  ${baseline.toFixed(0).padStart(6)} ${unit}  ${(ours / baseline).toFixed(2)}`);
}

async function pair() {
  const dir = mkdtempSync(join(tmpdir(), `iii-init-bench-${process.pid}-`));
  const server = createServer();
  await new Promise((r) => server.listen(join(dir, "s"), r));
  const accepted = new Promise((r) => server.once("connection", r));
  const a = connect(join(dir, "s"));
  const b = await accepted;
  return { a, b, close: () => (a.destroy(), b.destroy(), server.close(), rmSync(dir, { recursive: true, force: true })) };
}

// 1. Decoder: frames of 64 KiB vs copying the same bytes.
{
  const frames = [];
  for (let i = 0; i < 64; i++) frames.push(protocol.encodeFrame({ type: protocol.FrameType.STDOUT, stream: 1, payload: chunk }));
  const wire = Buffer.concat(frames);
  const rounds = total / wire.length;
  let t = performance.now();
  const d = new protocol.FrameDecoder();
  for (let i = 0; i < rounds; i++) for (let o = 0; o < wire.length; o += 16384) d.push(wire.subarray(o, o + 16384));
  const ours = total / MiB / ((performance.now() - t) / 1000);
  t = performance.now();
  for (let i = 0; i < rounds; i++) for (let o = 0; o < wire.length; o += 65536) Buffer.from(wire.subarray(o, o + 65536));
  const base = total / MiB / ((performance.now() - t) / 1000);
  row("decode 64 KiB STDOUT frames", ours, base, "MiB/s");
}

// 2. Guest → host STDOUT through ControlChannel + HostControl (credit flow control) vs a raw socket.
{
  const { a, b, close } = await pair();
  const host = HostControl.attach(a);
  const guest = new protocol.ControlChannel(b);
  const exec = host.exec({ argv: ["bench"] });
  let got = 0;
  const done = new Promise((r) => exec.stdout.on("data", (c) => (got += c.length) >= total && r()));
  let t = performance.now();
  for (let sent = 0; sent < total; sent += chunk.length) await guest.sendData(exec.stream, "STDOUT", chunk);
  await done;
  const ours = total / MiB / ((performance.now() - t) / 1000);
  close();

  const raw = await pair();
  let rawGot = 0;
  const rawDone = new Promise((r) => raw.a.on("data", (c) => (rawGot += c.length) >= total && r()));
  t = performance.now();
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!raw.b.write(chunk)) await new Promise((r) => raw.b.once("drain", r));
  }
  await rawDone;
  const base = total / MiB / ((performance.now() - t) / 1000);
  raw.close();
  row("exec stdout over unix socket", ours, base, "MiB/s");
}
process.exit(0);
