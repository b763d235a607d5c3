// Benchmarks: our stack vs slirp4netns, same tools, twin namespaces, one run.
// Prints `metric  ours  slirp4netns  ratio` (ratio > 1 means ours is better for that row).
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NetworkStack } from "../dist/index.js";
import { Namespace, onExitSignals, spawnTied, sweepStaleNamespaces, tapBridge } from "./netns.mjs";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** Comma-separated subset of bulk,conn,rtt,dns (default: all). */
const ONLY = new Set((process.env.BENCH_ONLY ?? "bulk,conn,rtt,dns").split(","));

/** CPU seconds (user + system) a process has used so far, from /proc (for slirp4netns). */
function procCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}
const selfCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

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
// Ctrl-C / kill / hang-up: every namespace, child process and temp dir goes before exiting.
onExitSignals(cleanup);
sweepStaleNamespaces();
// Temp dirs of SIGKILLed runs (iii-net-bench-<pid>-…, the pid gone).
for (const name of readdirSync(tmpdir())) {
  const pid = Number(/^iii-net-bench-(\d+)-/.exec(name)?.[1]);
  if (!pid || pid === process.pid) continue;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (e.code === "ESRCH") rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

function startProcess(cmd, args) {
  const c = spawnTied(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
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
    // Stays root: a dnsmasq that changes its user or group loses the parent-death signal (setpriv --pdeathsig).
    "--user=root", "--group=root",
  ]);
  await new Promise((r) => setTimeout(r, 500));

  /** metric -> samples over the rounds (rows keep their first-seen order). */
  const rows = new Map();
  const row = (metric, ours, base, higherIsBetter, unit, baseName = "slirp4netns") => {
    const ratio = higherIsBetter ? ours / base : base / ours;
    const name = `${metric} (${unit})`;
    if (!rows.has(name)) rows.set(name, { metric: name, ours: [], base: [], ratio: [], baseName, failed: 0 });
    const r = rows.get(name);
    console.log(`  measured ${metric}: ours ${fmt(ours)} ${baseName} ${fmt(base)}`);
    // A side whose tool failed this round (iperf3 without a result) leaves the round out of the row.
    if (!Number.isFinite(ratio)) {
      r.failed++;
      return;
    }
    r.ours.push(ours);
    r.base.push(base);
    r.ratio.push(ratio);
  };

  for (let round = 1; round <= ROUNDS; round++)
  for (const mtu of ONLY.has("bulk") ? [1500, 65520] : [1500]) {
    console.log(`round ${round}/${ROUNDS}, MTU ${mtu}`);
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
    await slirp.attachSlirp(mtu, dnsAddr);

    // Bytes per CPU-second of the relay itself: our stack runs in this process (the servers,
    // iperf3 and the TAP bridge are other processes); slirp4netns is its own process. slirp4netns
    // also does the TAP reads and writes, and a TAP write runs the receiving namespace's kernel input
    // in the writer's context; on our side the bridge does those. So the second row counts the
    // bridge's CPU with ours (the like-for-like one); the first is the stack alone.
    const slirpPid = slirp.children[0].pid;
    const bridgePid = ours.children[0].pid;
    const iperf = async (ns, reverse, cpu, cpu2) => {
      const c0 = cpu();
      const d0 = cpu2?.();
      const r = await ns.run(["iperf3", "-c", ns.hostAddress, "-p", String(iperfPort), "-t", String(SECONDS), "-J", ...(reverse ? ["-R"] : [])], 60_000);
      const cpuSeconds = cpu() - c0;
      const cpu2Seconds = cpu2 ? cpu2() - d0 : 0;
      try {
        const end = JSON.parse(r.out).end.sum_received;
        const gbit = (end.bytes * 8) / 1e9;
        return { mbps: end.bits_per_second / 1e6, gbPerCpuS: gbit / cpuSeconds, gbPerCpuS2: gbit / (cpuSeconds + cpu2Seconds) };
      } catch {
        return { mbps: Number.NaN, gbPerCpuS: Number.NaN, gbPerCpuS2: Number.NaN };
      }
    };
    for (const [dir, reverse] of ONLY.has("bulk") ? [["guest->host", false], ["host->guest", true]] : []) {
      const a = await iperf(ours, reverse, selfCpuSeconds, () => procCpuSeconds(bridgePid));
      const b = await iperf(slirp, reverse, () => procCpuSeconds(slirpPid));
      row(`bulk ${dir} MTU ${mtu}`, a.mbps, b.mbps, true, "Mbit/s");
      row(`bulk ${dir} MTU ${mtu} per CPU-s, stack alone`, a.gbPerCpuS, b.gbPerCpuS, true, "Gbit");
      row(`bulk ${dir} MTU ${mtu} per CPU-s, stack + bridge`, a.gbPerCpuS2, b.gbPerCpuS, true, "Gbit");
    }

    if (mtu === 1500) {
      const rate = async (ns, conc) => {
        const r = await ns.run([process.execPath, here("./guest/conn-rate.mjs"), `http://${ns.hostAddress}:${ports.http}/`, String(conc), String(SECONDS * 1000)]);
        return JSON.parse(r.out).rps;
      };
      if (ONLY.has("conn")) {
        row("HTTP conn rate sequential", await rate(ours, 1), await rate(slirp, 1), true, "req/s");
        row("HTTP conn rate 64 parallel", await rate(ours, 64), await rate(slirp, 64), true, "req/s");
      }
      const rtt = async (ns) => {
        const r = await ns.run([process.execPath, here("./guest/rtt.mjs"), ns.hostAddress, String(ports.echo), "3000"]);
        return JSON.parse(r.out).medianUs;
      };
      if (ONLY.has("rtt")) row("TCP round trip median", await rtt(ours), await rtt(slirp), false, "us");
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
      if (ONLY.has("dns")) {
        const oursQps = await qps((a) => ours.run(a), ours.dnsAddress);
        row("DNS queries/s", oursQps, await qps((a) => slirp.run(a), slirp.dnsAddress), true, "q/s");
        row("DNS queries/s vs upstream", oursQps, await qps(hostRun, dnsAddr), true, "q/s", "upstream direct");
      }
    }
    ours.close();
    slirp.close();
    await stack.close();
  }

  console.log("");
  console.log(`${ROUNDS} interleaved round(s); ours and slirp4netns are medians, ratio is min/median/max over the rounds`);
  console.log(`ours: guest namespace TAP -> ${tapBridge().label} -> unix socket -> the stack (the bridge stands where QEMU's`);
  console.log("stream netdev stands in a worker VM); slirp4netns reads and writes its TAP itself. Load at the end: " + readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "));
  console.log(["metric".padEnd(60), "ours".padStart(10), "slirp4netns".padStart(12), "ratio min/med/max".padStart(20)].join("  "));
  for (const r of rows.values()) {
    const base = r.baseName === "slirp4netns" ? fmt(median(r.base)) : `${fmt(median(r.base))}*`;
    let ratios = r.ratio.length ? [Math.min(...r.ratio), median(r.ratio), Math.max(...r.ratio)].map((x) => x.toFixed(2)).join("/") : "n/a";
    if (r.failed) ratios += ` (${r.ratio.length} of ${r.ratio.length + r.failed} rounds)`;
    console.log([r.metric.padEnd(60), fmt(median(r.ours)).padStart(10), base.padStart(12), ratios.padStart(20)].join("  "));
  }
  console.log("ratio > 1: ours is better (throughput/rate: ours/slirp; latency: slirp/ours).");
  console.log("* DNS row baseline: the same load sent from the host straight to the upstream dnsmasq.");
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
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
