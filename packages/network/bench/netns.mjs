// Namespace plumbing for the benchmarks (plain JS so `node bench/run.js` needs no TypeScript):
// one namespace bridged to our stack through tap-bridge.mjs, a twin attached to slirp4netns.
//
// Cleanup is signal-safe: every namespace (and every process started in it) is registered the moment
// it exists; `onExitSignals` runs the synchronous cleanup on SIGINT/SIGTERM/SIGHUP before exiting, and
// `sweepStaleNamespaces` removes what a SIGKILLed run (which no handler can catch) left behind.
import { spawn, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const JS_BRIDGE = fileURLToPath(new URL("../test/tap-bridge.mjs", import.meta.url));
const C_BRIDGE_SOURCE = fileURLToPath(new URL("./tap-bridge.c", import.meta.url));

/**
 * The TAP <-> unix-socket bridge standing where QEMU's stream netdev stands in a worker VM. The C one
 * (bench/tap-bridge.c, compiled once into node_modules/.cache) by default, like QEMU's own C code;
 * BENCH_BRIDGE=js uses test/tap-bridge.mjs (koffi worker threads, what the tests use), and so does a
 * machine without a C compiler. Returns the argv prefix to start it and a label for the bench output.
 */
export function tapBridge() {
  if (tapBridge.cached) return tapBridge.cached;
  const js = { argv: [process.execPath, JS_BRIDGE], label: "test/tap-bridge.mjs (JS, koffi threads)" };
  if (process.env.BENCH_BRIDGE === "js") return (tapBridge.cached = js);
  const src = readFileSync(C_BRIDGE_SOURCE);
  const dir = fileURLToPath(new URL("../node_modules/.cache/iii-network/", import.meta.url));
  const bin = `${dir}tap-bridge-${createHash("sha256").update(src).digest("hex").slice(0, 16)}`;
  if (!existsSync(bin)) {
    try {
      mkdirSync(dir, { recursive: true });
      execFileSync("cc", ["-O2", "-pthread", "-o", `${bin}.tmp${process.pid}`, C_BRIDGE_SOURCE], { stdio: ["ignore", "ignore", "pipe"] });
      renameSync(`${bin}.tmp${process.pid}`, bin);
    } catch (e) {
      console.log(`note: cannot build bench/tap-bridge.c (${String(e.message).split("\n")[0]}); using the JS bridge`);
      return (tapBridge.cached = js);
    }
  }
  return (tapBridge.cached = { argv: [bin], label: "bench/tap-bridge.c (C, two threads)" });
}
let n = 0;
const PREFIX = "iiibench-";
/**
 * `setpriv --pdeathsig KILL` in front of a command: the kernel SIGKILLs it when this process dies, even
 * by SIGKILL (which no handler sees), so host-side servers and bridges do not outlive the bench.
 */
export const DIE_WITH_PARENT = (() => {
  try {
    execFileSync("setpriv", ["--pdeathsig", "KILL", "true"], { stdio: "ignore" });
    return ["setpriv", "--pdeathsig", "KILL"];
  } catch {
    return [];
  }
})();

/** spawn(cmd, args) that dies with this process (see DIE_WITH_PARENT). */
export function spawnTied(cmd, args, options) {
  const argv = [...DIE_WITH_PARENT, cmd, ...args];
  return spawn(argv[0], argv.slice(1), options);
}

/** Namespaces of this process not yet closed. */
const live = new Set();

/** Closes every namespace this process made (kills the processes in it, deletes it). Synchronous. */
export function closeAllNamespaces() {
  for (const ns of [...live]) ns.close();
}

/**
 * On SIGINT/SIGTERM/SIGHUP: run `cleanup` (synchronous; it should end with closeAllNamespaces) once and
 * exit with 128 + the signal number. A second signal while cleaning up is ignored, not fatal.
 */
export function onExitSignals(cleanup) {
  let done = false;
  for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]]) {
    process.on(sig, () => {
      if (done) return;
      done = true;
      try {
        cleanup();
      } finally {
        closeAllNamespaces();
        process.exit(128 + num);
      }
    });
  }
}

/** Deletes `iiibench-<pid>-…` namespaces (and their /etc/netns dirs) whose creating process is gone. */
export function sweepStaleNamespaces() {
  let names = [];
  try {
    names = readdirSync("/run/netns");
  } catch {}
  try {
    names.push(...readdirSync("/etc/netns"));
  } catch {}
  for (const name of new Set(names)) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    killNamespacePids(name);
    try {
      execFileSync("ip", ["netns", "del", name], { stdio: "ignore" });
    } catch {}
    rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
  }
}

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

/**
 * SIGKILLs whatever still runs inside the namespace (e.g. an iperf3 started by a process already gone) and
 * any process naming it on its command line (slirp4netns runs outside it, given /run/netns/<name>).
 */
function killNamespacePids(name) {
  const pids = new Set();
  try {
    const out = execFileSync("ip", ["netns", "pids", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    for (const pid of out.split(/\s+/).filter(Boolean)) pids.add(Number(pid));
  } catch {}
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "latin1").includes(`/run/netns/${name}\0`)) pids.add(Number(entry));
    } catch {}
  }
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
}

function sh(ns, script) {
  return execFileSync("ip", ["netns", "exec", ns, "sh", "-c", script], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

async function waitFor(check, what) {
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      if (check()) return;
    } catch {}
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export class Namespace {
  constructor(kind) {
    this.name = `${PREFIX}${process.pid}-${n++}-${kind}`;
    this.children = [];
    /** Short-lived commands started by run(), killed too if the bench is interrupted. */
    this.running = new Set();
    live.add(this);
    execFileSync("ip", ["netns", "add", this.name]);
    mkdirSync(`/etc/netns/${this.name}`, { recursive: true });
  }

  /** Bridge to a NetworkStack already listening on socketPath. */
  async attachStack(stack, socketPath, mtu) {
    const tap = `ibt${process.pid % 100000}x${n}`.slice(0, 15);
    const gw = ipStr(stack.addresses.gatewayIp);
    writeFileSync(`/etc/netns/${this.name}/resolv.conf`, `nameserver ${gw}\n`);
    this.children.push(spawnTied("ip", ["netns", "exec", this.name, ...tapBridge().argv, tap, socketPath], { stdio: "ignore" }));
    await waitFor(() => sh(this.name, `ip link show ${tap} >/dev/null && echo ok`).includes("ok"), "tap");
    const mac = Array.from(stack.addresses.guestMac, (b) => b.toString(16).padStart(2, "0")).join(":");
    sh(this.name, `ip link set lo up && ip link set ${tap} address ${mac} mtu ${mtu} txqueuelen 10000 up && ip addr add ${ipStr(stack.addresses.guestIp)}/30 dev ${tap} && ip route add default via ${gw}`);
    this.hostAddress = gw;
    this.dnsAddress = gw;
  }

  /**
   * slirp4netns with its defaults: 10.0.2.100/24, host loopback at 10.0.2.2, DNS at 10.0.2.3.
   * With `dnsUpstream`, slirp4netns runs in a private mount namespace whose /etc/resolv.conf
   * names that (local) server, so its DNS forwarder uses the same upstream as our stack.
   */
  async attachSlirp(mtu, dnsUpstream) {
    writeFileSync(`/etc/netns/${this.name}/resolv.conf`, "nameserver 10.0.2.3\n");
    const argv = ["--configure", `--mtu=${mtu}`, "--netns-type=path", `/run/netns/${this.name}`, "tap0"];
    if (dnsUpstream) {
      const conf = `/etc/netns/${this.name}/slirp-resolv.conf`;
      writeFileSync(conf, `nameserver ${dnsUpstream}\n`);
      this.children.push(
        spawnTied("unshare", ["-m", "--propagation", "private", "sh", "-c", `mount --bind ${conf} /etc/resolv.conf && exec slirp4netns ${argv.join(" ")}`], { stdio: "ignore" }),
      );
    } else {
      this.children.push(spawnTied("slirp4netns", argv, { stdio: "ignore" }));
    }
    await waitFor(() => sh(this.name, "ip -4 addr show tap0").includes("10.0.2.100"), "slirp4netns tap0");
    sh(this.name, "ip link set lo up");
    this.hostAddress = "10.0.2.2";
    this.dnsAddress = "10.0.2.3";
  }

  run(argv, timeoutMs = 60_000) {
    return new Promise((resolve) => {
      const c = spawnTied("ip", ["netns", "exec", this.name, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
      this.running.add(c);
      let out = "";
      let err = "";
      c.stdout.on("data", (d) => (out += d));
      c.stderr.on("data", (d) => (err += d));
      const t = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
      c.on("close", (code) => {
        this.running.delete(c);
        clearTimeout(t);
        resolve({ code, out, err });
      });
    });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    live.delete(this);
    for (const c of [...this.children, ...this.running]) c.kill("SIGKILL");
    // Anything else in it (a grandchild, e.g. slirp4netns under unshare): a namespace only goes away
    // once no process holds it.
    killNamespacePids(this.name);
    try {
      execFileSync("ip", ["netns", "del", this.name]);
    } catch {}
    rmSync(`/etc/netns/${this.name}`, { recursive: true, force: true });
  }
}

export function ipStr(ip) {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}
