// Namespace plumbing for the benchmarks (plain JS so `node bench/run.js` needs no TypeScript):
// one namespace bridged to our stack through tap-bridge.mjs, a twin attached to slirp4netns.
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const BRIDGE = fileURLToPath(new URL("../test/tap-bridge.mjs", import.meta.url));
let n = 0;

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
    this.name = `iiibench-${process.pid}-${n++}-${kind}`;
    this.children = [];
    execFileSync("ip", ["netns", "add", this.name]);
    mkdirSync(`/etc/netns/${this.name}`, { recursive: true });
  }

  /** Bridge to a NetworkStack already listening on socketPath. */
  async attachStack(stack, socketPath, mtu) {
    const tap = `ibt${process.pid % 100000}x${n}`.slice(0, 15);
    const gw = ipStr(stack.addresses.gatewayIp);
    writeFileSync(`/etc/netns/${this.name}/resolv.conf`, `nameserver ${gw}\n`);
    this.children.push(spawn("ip", ["netns", "exec", this.name, process.execPath, BRIDGE, tap, socketPath], { stdio: "ignore" }));
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
        spawn("unshare", ["-m", "--propagation", "private", "sh", "-c", `mount --bind ${conf} /etc/resolv.conf && exec slirp4netns ${argv.join(" ")}`], { stdio: "ignore" }),
      );
    } else {
      this.children.push(spawn("slirp4netns", argv, { stdio: "ignore" }));
    }
    await waitFor(() => sh(this.name, "ip -4 addr show tap0").includes("10.0.2.100"), "slirp4netns tap0");
    sh(this.name, "ip link set lo up");
    this.hostAddress = "10.0.2.2";
    this.dnsAddress = "10.0.2.3";
  }

  run(argv, timeoutMs = 60_000) {
    return new Promise((resolve) => {
      const c = spawn("ip", ["netns", "exec", this.name, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      c.stdout.on("data", (d) => (out += d));
      c.stderr.on("data", (d) => (err += d));
      const t = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
      c.on("close", (code) => {
        clearTimeout(t);
        resolve({ code, out, err });
      });
    });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.children) c.kill("SIGKILL");
    try {
      execFileSync("ip", ["netns", "del", this.name]);
    } catch {}
    rmSync(`/etc/netns/${this.name}`, { recursive: true, force: true });
  }
}

export function ipStr(ip) {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}
