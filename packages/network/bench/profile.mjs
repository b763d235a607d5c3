// One iperf3 run through our stack in a namespace, for profiling the stack's process:
//   node --cpu-prof bench/profile.mjs MTU [reverse] [seconds]
// Prints the throughput in Mbit/s and the stack's CPU seconds.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NetworkStack } from "../dist/index.js";
import { Namespace } from "./netns.mjs";

const [mtuArg = "1500", dir = "forward", secondsArg = "4"] = process.argv.slice(2);
const mtu = Number(mtuArg);
const tmp = mkdtempSync(join(tmpdir(), `iii-net-prof-${process.pid}-`));
const port = 20000 + (process.pid % 20000);
const server = spawn("iperf3", ["-s", "-B", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 300));
const stack = new NetworkStack({ slot: 2, mtu, log: () => {}, policy: { hostPorts: [port] } });
await stack.listen(join(tmp, "vm.sock"));
const ns = new Namespace("prof");
try {
  await ns.attachStack(stack, join(tmp, "vm.sock"), mtu);
  const c0 = process.cpuUsage();
  const r = await ns.run(["iperf3", "-c", ns.hostAddress, "-p", String(port), "-t", secondsArg, "-J", ...(dir === "reverse" ? ["-R"] : [])]);
  const c = process.cpuUsage(c0);
  const mbps = JSON.parse(r.out).end.sum_received.bits_per_second / 1e6;
  console.log(JSON.stringify({ mtu, dir, mbps: Math.round(mbps), cpuSeconds: (c.user + c.system) / 1e6, retransmits: stack.counters.retransmits, drops: stack.counters.drops }));
} finally {
  ns.close();
  server.kill("SIGKILL");
  await stack.close();
  rmSync(tmp, { recursive: true, force: true });
}
process.exit(0);
