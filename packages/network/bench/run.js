// Benchmarks: our stack vs slirp4netns, same tools, twin namespaces, one run.
// Prints `metric  ours  slirp4netns  ratio` (ratio > 1 means ours is better for that row).
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NetworkStack } from "../dist/index.js";
import { Namespace } from "./netns.mjs";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);

function haveTool(cmd, args = ["--version"]) {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
if (!existsSync("/dev/net/tun") || !haveTool("ip", ["netns", "list"]) || !haveTool("slirp4netns") || !haveTool("iperf3")) {
  console.log("SKIP benchmarks: need /dev/net/tun, ip netns, slirp4netns and iperf3");
  process.exit(0);
}

const cleanups = [];
const cleanup = () => {
  while (cleanups.length) {
    try {
      cleanups.pop()();
    } catch {}
  }
};
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

function startProcess(cmd, args) {
  const c = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
  cleanups.push(() => c.kill("SIGKILL"));
  return c;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), `iii-net-bench-${process.pid}-`));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));

  const servers = startProcess(process.execPath, [here("./servers.mjs")]);
  const ports = JSON.parse((await once(servers.stdout, "data"))[0].toString());
  const iperfPort = 20000 + (process.pid % 20000);
  startProcess("iperf3", ["-s", "-B", "127.0.0.1", "-p", String(iperfPort)]);
  const dnsAddr = `127.${50 + (process.pid % 150)}.99.${1 + (process.pid % 250)}`;
  startProcess("dnsmasq", [
    "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null",
    `--listen-address=${dnsAddr}`, "--bind-interfaces", "--port=53", "--cache-size=0",
    "--local=/test/", "--address=/bench.test/192.0.2.50", "--dns-forward-max=4096",
  ]);
  await new Promise((r) => setTimeout(r, 500));

  const rows = [];
  const row = (metric, ours, base, higherIsBetter, unit, baseName = "slirp4netns") => {
    const ratio = higherIsBetter ? ours / base : base / ours;
    rows.push({ metric: `${metric} (${unit})`, ours, base, ratio, baseName });
    console.log(`  measured ${metric}: ours ${fmt(ours)} ${baseName} ${fmt(base)}`);
  };

  for (const mtu of [1500, 65520]) {
    const stack = new NetworkStack({
      slot: 1,
      mtu,
      log: () => {},
      policy: { hostPorts: [iperfPort, ports.http, ports.echo] },
      dns: { upstreams: [dnsAddr], maxConcurrent: 512 },
    });
    const sock = join(dir, `vm-${mtu}.sock`);
    await stack.listen(sock);
    cleanups.push(() => stack.close());
    const ours = new Namespace("ours");
    cleanups.push(() => ours.close());
    await ours.attachStack(stack, sock, mtu);
    const slirp = new Namespace("slirp");
    cleanups.push(() => slirp.close());
    await slirp.attachSlirp(mtu);

    const iperf = async (ns, reverse) => {
      const r = await ns.run(["iperf3", "-c", ns.hostAddress, "-p", String(iperfPort), "-t", String(SECONDS), "-J", ...(reverse ? ["-R"] : [])], 60_000);
      try {
        return JSON.parse(r.out).end.sum_received.bits_per_second / 1e6;
      } catch {
        return Number.NaN;
      }
    };
    row(`bulk guest->host MTU ${mtu}`, await iperf(ours, false), await iperf(slirp, false), true, "Mbit/s");
    row(`bulk host->guest MTU ${mtu}`, await iperf(ours, true), await iperf(slirp, true), true, "Mbit/s");

    if (mtu === 1500) {
      const rate = async (ns, conc) => {
        const r = await ns.run([process.execPath, here("./guest/conn-rate.mjs"), `http://${ns.hostAddress}:${ports.http}/`, String(conc), String(SECONDS * 1000)]);
        return JSON.parse(r.out).rps;
      };
      row("HTTP conn rate sequential", await rate(ours, 1), await rate(slirp, 1), true, "req/s");
      row("HTTP conn rate 64 parallel", await rate(ours, 64), await rate(slirp, 64), true, "req/s");
      const rtt = async (ns) => {
        const r = await ns.run([process.execPath, here("./guest/rtt.mjs"), ns.hostAddress, String(ports.echo), "3000"]);
        return JSON.parse(r.out).medianUs;
      };
      row("TCP round trip median", await rtt(ours), await rtt(slirp), false, "us");
      const qps = async (run, server) => {
        const r = await run([process.execPath, here("./guest/dns-qps.mjs"), server, "53", "32", String(SECONDS * 1000), "bench.test"]);
        return JSON.parse(r.out).qps;
      };
      const hostRun = (argv) =>
        new Promise((resolve) => {
          const c = spawn(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
          let out = "";
          c.stdout.on("data", (d) => (out += d));
          c.on("close", () => resolve({ out }));
        });
      row("DNS queries/s", await qps((a) => ours.run(a), ours.dnsAddress), await qps(hostRun, dnsAddr), true, "q/s", "upstream direct");
    }
    ours.close();
    slirp.close();
    await stack.close();
  }

  console.log("");
  console.log(["metric".padEnd(38), "ours".padStart(10), "slirp4netns".padStart(12), "ratio".padStart(7)].join("  "));
  for (const r of rows) {
    const base = r.baseName === "slirp4netns" ? fmt(r.base) : `${fmt(r.base)}*`;
    console.log([r.metric.padEnd(38), fmt(r.ours).padStart(10), base.padStart(12), r.ratio.toFixed(2).padStart(7)].join("  "));
  }
  console.log("ratio > 1: ours is better (throughput/rate: ours/slirp; latency: slirp/ours).");
  console.log("* DNS row baseline: the same load sent from the host straight to the upstream dnsmasq.");
}

function fmt(v) {
  if (!Number.isFinite(v)) return "n/a";
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

try {
  await main();
} finally {
  cleanup();
}
process.exit(0);
