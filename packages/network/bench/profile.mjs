// One load through our stack in a namespace, for profiling the stack's process:
//   node --cpu-prof bench/profile.mjs MODE [MTU] [seconds]
// MODE: forward | reverse (iperf3 guest->host / host->guest), rtt, dns, dns-direct (the DNS client on
// the host straight to the upstream dnsmasq, no stack: the DNS row's baseline).
// Prints the result and the stack process's CPU seconds; for the DNS modes also the CPU seconds of the
// client, the TAP bridge, the stack and dnsmasq per answered query (`cpuUsPerQuery`).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { NetworkStack } from "../dist/index.js";
import { Namespace, onExitSignals, spawnTied, sweepStaleNamespaces } from "./netns.mjs";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const [mode = "forward", mtuArg = "1500", secondsArg = "4"] = process.argv.slice(2);
const mtu = Number(mtuArg);
const tmp = mkdtempSync(join(tmpdir(), `iii-net-prof-${process.pid}-`));
const port = 20000 + (process.pid % 20000);
const children = [];
onExitSignals(() => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(tmp, { recursive: true, force: true });
});
sweepStaleNamespaces();
/** CPU seconds (user + system) a process has used so far, from /proc. */
function procCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}
const start = (cmd, args) => {
  const c = spawnTied(cmd, args, { stdio: ["ignore", "pipe", "inherit"] });
  children.push(c);
  return c;
};
start("iperf3", ["-s", "-B", "127.0.0.1", "-p", String(port)]);
const servers = start(process.execPath, [here("./servers.mjs")]);
const ports = JSON.parse((await once(servers.stdout, "data"))[0].toString());
const dnsAddr = `127.${50 + (process.pid % 150)}.98.${1 + (process.pid % 250)}`;
const dnsmasq = start("dnsmasq", ["--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null", `--listen-address=${dnsAddr}`, "--bind-interfaces", "--port=53", "--cache-size=0", "--local=/test/", "--address=/bench.test/192.0.2.50", "--dns-forward-max=4096", "--user=root", "--group=root"]);
await new Promise((r) => setTimeout(r, 400));
const stack = new NetworkStack({ slot: 2, mtu, log: () => {}, policy: { hostPorts: [port, ports.echo] }, dns: { upstreams: [dnsAddr], maxConcurrent: 512 } });
await stack.listen(join(tmp, "vm.sock"));
const ns = new Namespace("prof");
/** CPU ticks (user + system) of each thread of this process, by thread name (main thread: "main"). */
function threadTicks() {
  const out = {};
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, "utf8");
      const name = Number(tid) === process.pid ? "main" : stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out[name] = (out[name] ?? 0) + Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return out;
}
try {
  await ns.attachStack(stack, join(tmp, "vm.sock"), mtu);
  const t0 = threadTicks();
  const c0 = process.cpuUsage();
  let result;
  if (mode === "forward" || mode === "reverse") {
    const r = await ns.run(["iperf3", "-c", ns.hostAddress, "-p", String(port), "-t", secondsArg, "-J", ...(mode === "reverse" ? ["-R"] : [])]);
    result = { mbps: Math.round(JSON.parse(r.out).end.sum_received.bits_per_second / 1e6) };
  } else if (mode === "rtt") {
    const roundTrips = Number(secondsArg) * 5000;
    const r = await ns.run([process.execPath, here("./guest/rtt.mjs"), ns.hostAddress, String(ports.echo), String(roundTrips)]);
    result = { ...JSON.parse(r.out), roundTrips };
  } else {
    const direct = mode === "dns-direct";
    const argv = [process.execPath, here("./guest/dns-qps.mjs"), direct ? dnsAddr : ns.dnsAddress, "53", process.env.DNS_CONCURRENCY ?? "32", String(Number(secondsArg) * 1000), "bench.test"];
    const b0 = procCpuSeconds(ns.children[0].pid);
    const d0 = procCpuSeconds(dnsmasq.pid);
    const r = direct
      ? await new Promise((resolve) => {
          const c = spawnTied(argv[0], argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
          let out = "";
          c.stdout.on("data", (d) => (out += d));
          c.on("close", () => resolve({ out }));
        })
      : await ns.run(argv);
    result = JSON.parse(r.out);
    const us = (s) => Math.round((s * 1e6) / result.answered);
    const st = process.cpuUsage(c0);
    result.cpuUsPerQuery = {
      client: us(result.clientCpuSeconds),
      bridge: us(procCpuSeconds(ns.children[0].pid) - b0),
      stack: us((st.user + st.system) / 1e6),
      dnsmasq: us(procCpuSeconds(dnsmasq.pid) - d0),
    };
  }
  const c = process.cpuUsage(c0);
  const t1 = threadTicks();
  const threads = Object.fromEntries(Object.entries(t1).map(([k, v]) => [k, (v - (t0[k] ?? 0)) / 100]).filter(([, v]) => v > 0));
  console.log(JSON.stringify({ mode, mtu, ...result, cpuSeconds: (c.user + c.system) / 1e6, userSeconds: c.user / 1e6, systemSeconds: c.system / 1e6, threads, retransmits: stack.counters.retransmits, drops: stack.counters.drops, dns: stack.dns.counters }));
} finally {
  ns.close();
  for (const c of children) c.kill("SIGKILL");
  await stack.close();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
