// Where the round trip of a 1-byte request/answer (bench/guest/rtt.mjs's ping-pong) goes, hop by hop
// (run under the heavy-work lock):   node bench/rtt-hops.mjs [COUNT]
// The guest client stamps each request and answer (bench/guest/rtt-stamps.mjs); this process, which
// runs the stack, stamps the VM socket's reads and writes and the host socket's writes and reads
// (net.Socket patched); the echo server stamps its reads. All stamps are CLOCK_MONOTONIC, so per
// request (medians):
//   guest->stack   client write .. the stack reads the frame (guest kernel, TAP, bridge, unix socket, wake-up)
//   stack in       .. the stack's write to the host socket has returned
//   to echo        .. the echo server reads it (loopback, its wake-up)
//   echo->stack    .. the stack reads the answer (echo's write, loopback, the stack's wake-up)
//   stack out      .. the stack's write toward the VM has returned (the flush runs in setImmediate)
//   stack->guest   .. the client reads the answer (unix socket, bridge, TAP write, guest kernel, wake-up)
// plus the time inside each write call (Node's stream code and the syscall, which wakes the reader),
// and the same client's round trip through slirp4netns and straight to the echo server.
import net from "node:net";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NetworkStack } from "../dist/index.js";
import { Namespace, onExitSignals, spawnTied, sweepStaleNamespaces } from "./netns.mjs";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const count = Number(process.argv[2] ?? 3000);
const tmp = mkdtempSync(join(tmpdir(), `iii-net-hops-${process.pid}-`));
// Also on a crash before the try below (the children die with this process: spawnTied).
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));
const children = [];
onExitSignals(() => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});
sweepStaleNamespaces();

// Stamps in this process: which socket, what, when.
const vmWriteSizes = new Map();
/** Time inside each write call (Node's stream code and the syscall, which wakes the reader). */
const writeCalls = { vm: [], host: [] };
const stamps = { vmRead: [], vmWrite: [], hostWrite: [], hostRead: [] };
let vmSock;
let echoPort = -1;
const hostSockOf = (s) => s.remotePort === echoPort;
const origEmit = net.Socket.prototype.emit;
net.Socket.prototype.emit = function (ev, ...args) {
  if (ev === "data") {
    const t = process.hrtime.bigint();
    if (this === vmSock) stamps.vmRead.push(t);
    else if (hostSockOf(this)) stamps.hostRead.push(t);
  }
  return origEmit.call(this, ev, ...args);
};
for (const m of ["write", "uncork"]) {
  const orig = net.Socket.prototype[m];
  net.Socket.prototype[m] = function (...args) {
    const before = process.hrtime.bigint();
    const r = orig.apply(this, args);
    const t = process.hrtime.bigint();
    if (this === vmSock && m === "write") {
      stamps.vmWrite.push(t);
      writeCalls.vm.push(t - before);
      vmWriteSizes.set(args[0].length, (vmWriteSizes.get(args[0].length) ?? 0) + 1);
    }
    else if (hostSockOf(this) && (m === "uncork" || this.writableCorked === 0)) {
      stamps.hostWrite.push(t);
      writeCalls.host.push(t - before);
    }
    return r;
  };
}

// Echo server in its own process (like bench/servers.mjs), stamping its reads.
const echo = spawnTied(process.execPath, ["-e", `
const net = require("node:net");
const reads = [];
const srv = net.createServer({ noDelay: true }, (s) => {
  s.on("data", (d) => { reads.push(String(process.hrtime.bigint())); s.write(d); });
  s.on("error", () => {});
});
srv.listen(0, "127.0.0.1", () => console.log(JSON.stringify({ port: srv.address().port })));
process.on("SIGUSR2", () => { console.log(JSON.stringify({ reads })); reads.length = 0; });
`], { stdio: ["ignore", "pipe", "inherit"] });
children.push(echo);
echoPort = JSON.parse((await once(echo.stdout, "data"))[0].toString()).port;
const echoReads = async () => {
  let buf = "";
  const done = new Promise((resolve) => {
    const on = (d) => {
      buf += d;
      if (buf.endsWith("\n")) {
        echo.stdout.off("data", on);
        resolve(JSON.parse(buf).reads.map(BigInt));
      }
    };
    echo.stdout.on("data", on);
  });
  echo.kill("SIGUSR2");
  return done;
};

const stack = new NetworkStack({ slot: 3, mtu: 1500, log: () => {}, policy: { hostPorts: [echoPort] } });
const origListen = net.Server.prototype.listen;
const sockPath = join(tmp, "vm.sock");
// The VM connection is the one accepted on the stack's unix socket.
const origAcceptEmit = net.Server.prototype.emit;
net.Server.prototype.emit = function (ev, s, ...rest) {
  if (ev === "connection" && typeof this.address() === "string") vmSock = s;
  return origAcceptEmit.call(this, ev, s, ...rest);
};
await stack.listen(sockPath);
void origListen;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};
const us = (ns) => Number(ns) / 1000;
/** First stamp in `list` at or after `t` (lists are sorted), from index hint `h.i`. */
const after = (list, t, h) => {
  while (h.i < list.length && list[h.i] < t) h.i++;
  return list[h.i];
};

async function clientRun(ns, host) {
  const argv = [process.execPath, here("./guest/rtt-stamps.mjs"), host, String(echoPort), String(count)];
  const r = ns ? await ns.run(argv) : await new Promise((resolve) => {
    const c = spawnTied(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    c.stdout.on("data", (d) => (out += d));
    c.on("close", () => resolve({ out }));
  });
  const j = JSON.parse(r.out);
  return { send: j.send.map(BigInt), recv: j.recv.map(BigInt) };
}

try {
  const ns = new Namespace("hops");
  await ns.attachStack(stack, sockPath, 1500);
  for (const k of Object.keys(stamps)) stamps[k].length = 0;
  writeCalls.vm.length = 0;
  writeCalls.host.length = 0;
  await echoReads();
  const c = await clientRun(ns, ns.hostAddress);
  const er = await echoReads();
  const hops = { "guest->stack": [], "stack in": [], "to echo": [], "echo->stack": [], "stack out": [], "stack->guest": [], total: [] };
  const h = { vmRead: { i: 0 }, hostWrite: { i: 0 }, echo: { i: 0 }, hostRead: { i: 0 }, vmWrite: { i: 0 } };
  for (let i = 100; i < count; i++) {
    const t0 = c.send[i];
    const t1 = after(stamps.vmRead, t0, h.vmRead);
    const t2 = after(stamps.hostWrite, t1, h.hostWrite);
    const te = after(er, t2, h.echo);
    const t3 = after(stamps.hostRead, te, h.hostRead);
    const t4 = after(stamps.vmWrite, t3, h.vmWrite);
    const t5 = c.recv[i];
    if ([t1, t2, te, t3, t4].some((x) => x === undefined) || t4 > t5) continue;
    hops["guest->stack"].push(us(t1 - t0));
    hops["stack in"].push(us(t2 - t1));
    hops["to echo"].push(us(te - t2));
    hops["echo->stack"].push(us(t3 - te));
    hops["stack out"].push(us(t4 - t3));
    hops["stack->guest"].push(us(t5 - t4));
    hops.total.push(us(t5 - t0));
  }
  const ours = Object.fromEntries(Object.entries(hops).map(([k, v]) => [k, Math.round(median(v) * 10) / 10]));
  ours.matched = hops.total.length;
  ours["vm write call"] = Math.round(median(writeCalls.vm.map(us)) * 10) / 10;
  ours["host write call"] = Math.round(median(writeCalls.host.map(us)) * 10) / 10;
  ns.close();
  const sl = new Namespace("hops-slirp");
  await sl.attachSlirp(1500);
  const cs = await clientRun(sl, sl.hostAddress);
  sl.close();
  const cd = await clientRun(undefined, "127.0.0.1");
  const tot = (x) => Math.round(median(x.recv.map((r, i) => us(r - x.send[i])).slice(100)) * 10) / 10;
  console.log(JSON.stringify({ ours, oursTotal: tot(c), slirpTotal: tot(cs), directTotal: tot(cd), vmReads: stamps.vmRead.length, vmWrites: stamps.vmWrite.length, hostWrites: stamps.hostWrite.length, hostReads: stamps.hostRead.length, drops: stack.counters.drops, vmWriteBytes: Object.fromEntries(vmWriteSizes) }));
} finally {
  for (const ch of children) ch.kill("SIGKILL");
  await stack.close();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
