import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createSocket, type Socket } from "node:dgram";
import { connect, createServer, type Server } from "node:net";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

// Hostile network attempts from inside a real preview 2 component (JavaScript componentized with jco's QuickJS
// backend, calling wasi:sockets itself), run by the real runner on preview2-shim. The targets are listeners in a
// network namespace this test creates (reached over its own veth pair) and on the host's own addresses: a broken
// defence shows up as a connection or datagram counted here, and nothing can leave the machine.

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, "fixtures/hostile-net");
const canNetns = process.getuid?.() === 0 && spawnSync("ip", ["netns", "list"]).status === 0;
if (!canNetns) console.warn("[hostile-net] skipped: needs root and `ip netns` to create the namespace its targets listen in");

const ns = `iiiwasm${process.pid}`;
const hostIf = `iwh${process.pid}`.slice(0, 15);
const nsIf = `iwg${process.pid}`.slice(0, 15);
const octet = 20 + (process.pid % 200);
const hostAddr = `10.254.${octet}.1`;
const nsAddr = `10.254.${octet}.2`;

const ip = (...args: string[]) => {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
};

/** Listeners inside the namespace: two TCP ports and one UDP port; every accept and datagram is reported. */
const NS_LISTENERS = `
const net = require("node:net"), dgram = require("node:dgram");
const say = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const tcp = (name) => new Promise((r) => { const s = net.createServer((c) => { say({ tcp: name }); c.destroy(); }); s.listen(0, "${nsAddr}", () => r(s.address().port)); });
const udp = (name) => new Promise((r) => { const s = dgram.createSocket("udp4"); s.on("message", (m) => say({ udp: name, data: m.toString() })); s.bind(0, "${nsAddr}", () => r(s.address().port)); });
(async () => say({ ready: { allowed: await tcp("allowed"), unlisted: await tcp("unlisted"), udpAllowed: await udp("allowed"), udpUnlisted: await udp("unlisted") } }))();
`;

type Ports = { allowed: number; unlisted: number; udpAllowed: number; udpUnlisted: number };
type NsEvent = { tcp?: string; udp?: string; data?: string; ready?: Ports };

let root: string;
let project: string;
let component: Uint8Array;
let listeners: ChildProcess | undefined;
const nsEvents: NsEvent[] = [];
let ports: Ports;
let hostListener: Server;
let loopListener: Server;
let hostUdp: Socket;
const hostHits = { host: 0, loop: 0, udp: 0 };

async function buildHostileComponent(): Promise<Uint8Array> {
  // jco ships the WASI 0.2.12 WIT packages the world imports; the test assembles the WIT directory from them.
  const jcoDir = realpathSync(join(here, "../../node_modules/@bytecodealliance/jco"));
  const jcoRequire = createRequire(join(jcoDir, "package.json"));
  const builtin = join(jcoDir, "lib/wit/builtin/0.2.12");
  const wit = join(root, "wit");
  mkdirSync(join(wit, "deps"), { recursive: true });
  cpSync(join(fixture, "world.wit"), join(wit, "world.wit"));
  for (const dep of ["wasi-cli", "wasi-clocks", "wasi-filesystem", "wasi-io", "wasi-random", "wasi-sockets"]) cpSync(join(builtin, dep), join(wit, "deps", dep), { recursive: true });
  const { componentize } = (await import(jcoRequire.resolve("componentize-qjs"))) as { componentize(o: object): Promise<{ component: Uint8Array }> };
  const jsPath = join(fixture, "hostile.js");
  return (await componentize({ witPath: wit, jsSource: readFileSync(jsPath, "utf8"), jsPath, world: "hostile" })).component;
}

const listen = (address: string, onConn: () => void) =>
  new Promise<Server>((resolve) => {
    const s = createServer((c) => {
      onConn();
      c.destroy();
    });
    s.listen(0, address, () => resolve(s));
  });
const portOf = (s: Server) => (s.address() as { port: number }).port;

beforeAll(async () => {
  if (!canNetns) return;
  root = mkdtempSync(join(tmpdir(), "iii-wasm-hostile-"));
  project = join(root, "project");
  mkdirSync(project);
  component = await buildHostileComponent();
  writeFileSync(join(project, "hostile.wasm"), component);

  ip("netns", "add", ns);
  ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns);
  ip("addr", "add", `${hostAddr}/30`, "dev", hostIf);
  ip("link", "set", hostIf, "up");
  ip("-n", ns, "addr", "add", `${nsAddr}/30`, "dev", nsIf);
  ip("-n", ns, "link", "set", nsIf, "up");
  ip("-n", ns, "link", "set", "lo", "up");
  // the namespace's address is reached over our own veth, never through a default route
  expect(ip("route", "get", nsAddr)).toContain(`dev ${hostIf}`);

  listeners = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", NS_LISTENERS], { stdio: ["ignore", "pipe", "inherit"] });
  const ready = new Promise<void>((resolve) => {
    createInterface({ input: listeners!.stdout! }).on("line", (line) => {
      const event = JSON.parse(line) as NsEvent;
      if (event.ready) {
        ports = event.ready;
        resolve();
      } else nsEvents.push(event);
    });
  });
  await ready;
  hostListener = await listen(hostAddr, () => hostHits.host++);
  loopListener = await listen("127.0.0.1", () => hostHits.loop++);
  hostUdp = createSocket("udp4").on("message", () => hostHits.udp++);
  await new Promise<void>((resolve) => hostUdp.bind(0, hostAddr, resolve));
}, 120_000);

afterAll(() => {
  if (!canNetns) return;
  listeners?.kill("SIGKILL");
  hostListener?.close();
  loopListener?.close();
  hostUdp?.close();
  spawnSync("ip", ["netns", "del", ns]);
  spawnSync("ip", ["link", "del", hostIf]);
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
const cliRun = (args: string[]) => runWorkerCli(args, { cwd: project, env: { III_HOME: join(root, "home") } });

/** Adds the hostile component as a new worker with this attack and these options and starts it; returns its name. */
async function launch(kind: string, target: string, options: string[]) {
  const name = `h${++n}`;
  const added = await cliRun(["add", "./hostile.wasm", "--name", name, "-e", `ATTACK=${kind}`, "-e", `TARGET=${target}`, ...options]);
  expect(added.code, added.stderr).toBe(0);
  const started = await cliRun(["start", name]);
  expect(started.code, started.stderr).toBe(0);
  return name;
}

/** Adds the hostile component as a new worker with this attack and these options, runs it, returns its verdict line. */
async function attack(kind: string, target: string, options: string[]) {
  return verdictOf(await launch(kind, target, options), kind, target);
}

/** Waits for the worker's run to end; its last line about the attack and its logs. */
async function verdictOf(name: string, kind: string, target: string) {
  const run = cliRun;
  for (let i = 0; i < 600; i++) {
    const row = (JSON.parse((await run(["list", "--json"])).stdout) as { name: string; status: string }[]).find((r) => r.name === name)!;
    if (row.status !== "running" && row.status !== "pending") {
      expect(row.status).toBe("completed");
      const shown = await run(["logs", name]);
      const logs = shown.stdout + shown.stderr;
      return { verdict: logs.split("\n").findLast((l) => l.startsWith(`${kind} ${target}:`)) ?? `(no verdict) ${logs}`, logs };
    }
    await sleep(50);
  }
  throw new Error(`${name} did not end`);
}

/** A TCP port nothing listens on right now (the kernel's pick, released). */
async function freePort(): Promise<number> {
  const s = await listen("127.0.0.1", () => undefined);
  const port = portOf(s);
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Connects to `target` from the host: what the listener sent until it closed, or the connect error's code. */
function dial(target: string): Promise<string> {
  const [host, port] = target.split(":") as [string, string];
  return new Promise((resolve) => {
    let text = "";
    const c = connect({ host, port: Number(port) });
    c.setEncoding("utf8");
    c.on("data", (d: string) => (text += d));
    c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    c.on("close", () => resolve(text));
    c.setTimeout(5_000, () => c.destroy());
  });
}

/** Dials `target` every 25 ms until stopped: whatever answered (a connect that did not fail with ECONNREFUSED). */
function watchListener(target: string) {
  const answers: string[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const r = await dial(target);
      if (r !== "ECONNREFUSED") answers.push(r);
      await sleep(25);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return answers;
    },
  };
}

/** Lets a connection or datagram that got through arrive before the counts are read. */
const settle = () => sleep(300);

describe.skipIf(!canNetns)("hostile network from inside a component", () => {
  it("control: a connect to the address tcpConnect lists reaches the listener (so the refusals below are real)", async () => {
    const target = `${nsAddr}:${ports.allowed}`;
    const { verdict } = await attack("tcp-connect", target, ["--wasm-tcp-connect", target]);
    expect(verdict).toBe(`tcp-connect ${target}: connected`);
    await settle();
    expect(nsEvents.filter((e) => e.tcp === "allowed")).toHaveLength(1);
  }, 60_000);

  it("a connect to an address outside tcpConnect is refused and never reaches its listener", async () => {
    const target = `${nsAddr}:${ports.unlisted}`;
    const { verdict, logs } = await attack("tcp-connect", target, ["--wasm-tcp-connect", `${nsAddr}:${ports.allowed}`]);
    expect(verdict).toBe(`tcp-connect ${target}: refused access-denied`);
    expect(logs).toContain(`tcpConnect ${target} refused: not in tcpConnect`);
    await settle();
    expect(nsEvents.filter((e) => e.tcp === "unlisted")).toHaveLength(0);
  }, 60_000);

  it("a connect to the host's own address is refused when a listed range covers it, and with the host network inherited", async () => {
    const target = `${hostAddr}:${portOf(hostListener)}`;
    const subnet = `10.254.${octet}.0/30:*`;
    // the same range reaches the namespace's address (so the refusal is about the host, not the range)
    expect((await attack("tcp-connect", `${nsAddr}:${ports.allowed}`, ["--wasm-tcp-connect", subnet])).verdict).toMatch(/: connected$/);
    for (const options of [["--wasm-tcp-connect", subnet], ["--wasm-inherit-network"]]) {
      const { verdict, logs } = await attack("tcp-connect", target, options);
      expect(verdict).toBe(`tcp-connect ${target}: refused access-denied`);
      expect(logs).toContain(`tcpConnect ${target} refused: egress policy: builtin:host-address (${hostAddr}/32)`);
    }
    await settle();
    expect(hostHits.host).toBe(0);
  }, 90_000);

  it("a connect to the host's loopback is refused, with the host network inherited and the port listed", async () => {
    const target = `127.0.0.1:${portOf(loopListener)}`;
    const { verdict, logs } = await attack("tcp-connect", target, ["--wasm-inherit-network", "--wasm-tcp-connect", target]);
    expect(verdict).toBe(`tcp-connect ${target}: refused access-denied`);
    expect(logs).toMatch(/refused: egress policy: host loopback/);
    await settle();
    expect(hostHits.loop).toBe(0);
  }, 60_000);

  it("with the host network inherited and no bind list, a bind + listen on the host's loopback is refused and nothing listens", async () => {
    const target = `127.0.0.1:${await freePort()}`;
    const watch = watchListener(target);
    const { verdict, logs } = await attack("tcp-listen", target, ["--wasm-inherit-network", "--max-execution-ms", "20000"]);
    expect(verdict).toBe(`tcp-listen ${target}: refused access-denied`);
    expect(logs).toContain(`tcpBind ${target} refused: not in tcpBind (an empty tcpBind allows no bind, even with the host network inherited)`);
    expect(await watch.stop()).toEqual([]);
  }, 60_000);

  it("binds to loopback, 0.0.0.0 and ports below 1024 need a pattern naming them; a named one listens", async () => {
    const port = await freePort();
    const refusals: [string, string[], string][] = [
      [`127.0.0.1:${port}`, ["--wasm-tcp-bind", "*:*"], "the host's loopback needs a tcpBind pattern naming its address, not *"],
      [`0.0.0.0:${port}`, ["--wasm-tcp-bind", "*:*"], "0.0.0.0 (every host address, loopback included) needs a tcpBind pattern naming its address, not *"],
      ["0.0.0.0:81", ["--wasm-tcp-bind", "0.0.0.0:*"], "port 81 (below 1024) needs a tcpBind pattern naming the port, not *"],
    ];
    for (const [target, options, reason] of refusals) {
      const watch = watchListener(`127.0.0.1:${target.split(":")[1]}`);
      const { verdict, logs } = await attack("tcp-listen", target, ["--wasm-inherit-network", "--max-execution-ms", "20000", ...options]);
      expect(verdict).toBe(`tcp-listen ${target}: refused access-denied`);
      expect(logs).toContain(`tcpBind ${target} refused: ${reason}`);
      expect(await watch.stop()).toEqual([]);
    }
    // control: a pattern naming the address and port opens exactly that bind
    const target = `127.0.0.1:${port}`;
    const name = await launch("tcp-listen", target, ["--wasm-inherit-network", "--wasm-tcp-bind", target, "--max-execution-ms", "20000"]);
    let answer = "";
    for (let i = 0; i < 200 && !answer.startsWith("this is"); i++) {
      answer = await dial(target);
      if (!answer.startsWith("this is")) await sleep(50);
    }
    expect(answer).toBe("this is the wasm guest, not your service\n");
    expect((await verdictOf(name, "tcp-listen", target)).verdict).toBe(`tcp-listen ${target}: accepted`);
  }, 90_000);

  it("a name lookup with lookups disabled is refused (no resolution at all)", async () => {
    const { verdict, logs } = await attack("lookup", "localhost", ["--wasm-tcp-connect", `${nsAddr}:${ports.allowed}`]);
    expect(verdict).toBe("lookup localhost: refused permanent-resolver-failure");
    expect(logs).toContain("allowIpNameLookup is false");
  }, 60_000);

  it("UDP: a datagram to the address udpOutgoing lists arrives; one to another port or to the host is refused and never arrives", async () => {
    const listed = `${nsAddr}:${ports.udpAllowed}`;
    const bind = ["--wasm-udp-bind", "0.0.0.0:*"];
    expect((await attack("udp-send", listed, [...bind, "--wasm-udp-outgoing", listed])).verdict).toBe(`udp-send ${listed}: sent`);
    const unlisted = `${nsAddr}:${ports.udpUnlisted}`;
    const refused = await attack("udp-send", unlisted, [...bind, "--wasm-udp-outgoing", listed]);
    expect(refused.verdict).toBe(`udp-send ${unlisted}: refused access-denied`);
    expect(refused.logs).toContain(`udpOutgoing ${unlisted} refused: not in udpOutgoing`);
    const toHost = `${hostAddr}:${hostUdp.address().port}`;
    const hostRefused = await attack("udp-send", toHost, [...bind, "--wasm-udp-outgoing", `10.254.${octet}.0/30:*`]);
    expect(hostRefused.verdict).toBe(`udp-send ${toHost}: refused access-denied`);
    expect(hostRefused.logs).toContain(`refused: egress policy: builtin:host-address (${hostAddr}/32)`);
    await settle();
    expect(nsEvents.filter((e) => e.udp !== undefined)).toEqual([{ udp: "allowed", data: "hostile" }]);
    expect(hostHits.udp).toBe(0);
  }, 90_000);
});
