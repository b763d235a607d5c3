/**
 * The network path users see: a TCG guest (the worker's libkrunfw kernel, virtio-net) running iperf3 and a
 * TCP request/response loop against the host, once through @iii/network (QEMU's stream netdev to our
 * socket, exactly as a worker VM) and once on QEMU's built-in user networking (`-netdev user`, slirp inside
 * QEMU). Same kernel, rootfs, guest tools, host servers; rounds interleaved. Prints
 * `metric  ours  qemu-user  ratio min/med/max` (ratio > 1: ours better).
 *
 *   flock /tmp/iii-heavy.lock node packages/worker/bench/net-vm/run.mjs [--rounds 3] [--seconds 5] [--pcap DIR]
 *
 * `--rows fwd,rev,rtt,conn` runs only those loads in the guest (default all four); `--keep DIR` copies each run's
 * console log there. A guest whose kernel died is named by its oops (kernelPanicSummary).
 *
 * `--pcap DIR` records every frame of each run: ours in the stack's process (DIR/ours-N.pcap), QEMU's user
 * networking at its netdev (DIR/user-N.pcap, QEMU's filter-dump), both with microsecond timestamps.
 *
 * The guest rootfs is the busybox test rootfs plus the host's iperf3 (with the shared libraries it needs)
 * and `rr`, a static C ping-pong/connection-rate client (rr.c, built here with gcc -static).
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { NetworkStack } from "@iii/network";
import { resolveKernel } from "../../src/firmware/index.js";
import { kernelPanicSummary } from "../../src/vmm/console-log.js";
import { QemuVmm } from "../../src/vmm/qemu-vmm.js";
import { buildBusyboxRootfs } from "../boot/raw-floor.js";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, seconds: { type: "string", default: "5" }, pings: { type: "string", default: "2000" }, pcap: { type: "string" }, rows: { type: "string", default: "fwd,rev,rtt,conn" }, keep: { type: "string" }, "smp-plain": { type: "boolean", default: false } } });
/** `--smp-plain`: both VMs get `-smp 1` instead of the worker's `-smp 1,maxcpus=2` (a diagnosis A/B; see qemu-argv.ts smpOption). */
const SMP_PLAIN = values["smp-plain"];
const ROWS = new Set(values.rows.split(","));
for (const r of ROWS) if (!["fwd", "rev", "rtt", "conn"].includes(r)) throw new Error(`--rows: unknown load ${r} (fwd, rev, rtt, conn)`);
const KEEP_DIR = values.keep;
if (KEEP_DIR) mkdirSync(KEEP_DIR, { recursive: true });
const PCAP_DIR = values.pcap;
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const PINGS = Number(values.pings);
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const GUEST_MAC = "52:54:00:12:34:56";

for (const tool of ["iperf3", "gcc", "qemu-system-x86_64"]) {
  try {
    execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
  } catch {
    console.log(`SKIP net-vm bench: ${tool} not found`);
    process.exit(0);
  }
}

const work = mkdtempSync("/tmp/iii-netvm-");
const children: ChildProcess[] = [];
const cleanup = () => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
};
for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
  process.on(sig, () => {
    cleanup();
    // The bundle run-ts.mjs wrote next to this file would outlive the exit.
    rmSync(fileURLToPath(import.meta.url), { force: true });
    process.exit(128 + num);
  });
}
/** Host-side helpers die with this process even if it is SIGKILLed (setpriv --pdeathsig). */
const startTied = (cmd: string, args: string[]) => {
  const c = spawn("setpriv", ["--pdeathsig", "KILL", cmd, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(c);
  return c;
};

/** Copies `bin` and every shared library ldd names into the rootfs at the same paths. */
function installDynamic(root: string, bin: string): void {
  const paths = new Set([bin]);
  for (const line of execFileSync("ldd", [bin], { encoding: "utf8" }).split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) paths.add(m[1]!);
  }
  for (const p of paths) {
    mkdirSync(join(root, dirname(p)), { recursive: true });
    copyFileSync(p, join(root, p));
    chmodSync(join(root, p), 0o755);
  }
}

function buildRootfs(): string {
  const root = join(work, "root");
  cpSync(buildBusyboxRootfs(), root, { recursive: true, verbatimSymlinks: true });
  installDynamic(root, execFileSync("sh", ["-c", "command -v iperf3"], { encoding: "utf8" }).trim());
  execFileSync("gcc", ["-O2", "-static", "-o", join(root, "bin/rr"), here("./rr.c")]);
  mkdirSync(join(root, "results"), { recursive: true });
  // Results go to files on the root share (virtio-fs), read by the host after QEMU exits.
  writeFileSync(
    join(root, "init.krun"),
    `#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
ip link set lo up
ip link set eth0 up
ip addr add $NET_ADDR dev eth0
ip route add default via $NET_GW
R=/results/$RUN
mkdir -p $R
echo netvm-up
# The virtio feature bits the guest driver negotiated (bit 0 CSUM, 1 GUEST_CSUM, 7/8 GUEST_TSO4/6, 11/12 HOST_TSO4/6).
cat /sys/class/net/eth0/device/features > $R/features.txt 2>&1
case ",$ROWS," in *",fwd,"*) iperf3 -c $HOST -p $IPERF_PORT -t $SECS -J > $R/fwd.json 2>&1 ;; esac
case ",$ROWS," in *",rev,"*) iperf3 -c $HOST -p $IPERF_PORT -t $SECS -J -R > $R/rev.json 2>&1 ;; esac
case ",$ROWS," in *",rtt,"*) rr $HOST $ECHO_PORT rtt $PINGS > $R/rtt.txt 2>&1 ;; esac
case ",$ROWS," in *",conn,"*) rr $HOST $ECHO_PORT conn $SECS > $R/conn.txt 2>&1 ;; esac
sync
echo netvm-done
reboot -f
`,
  );
  chmodSync(join(root, "init.krun"), 0o755);
  return root;
}

type Mode = "ours" | "user";
interface Sample {
  fwdMbps: number;
  revMbps: number;
  rttUs: number;
  connPerS: number;
  /** CPU seconds our stack's process spent during the run (ours only). */
  stackCpuS: number;
  /** Our stack's retransmissions and dropped frames during the run (ours only). */
  retransmits: number;
  drops: number;
  dropReasons: string;
}

const { kernel } = await resolveKernel({});
const root = buildRootfs();
// A port the kernel says is free now (a fixed formula once landed on a port a live connection held: iperf3 could not listen).
const iperfPort = await new Promise<number>((resolve, reject) => {
  const probe = createServer();
  probe.once("error", reject);
  probe.listen(0, "127.0.0.1", () => {
    const { port } = probe.address() as AddressInfo;
    probe.close(() => resolve(port));
  });
});
startTied("iperf3", ["-s", "-B", "127.0.0.1", "-p", String(iperfPort)]);
const servers = startTied(process.execPath, [fileURLToPath(new URL("../../../network/bench/servers.mjs", import.meta.url))]);
const ports = JSON.parse(((await once(servers.stdout!, "data")) as Buffer[])[0]!.toString()) as { echo: number };
await new Promise((r) => setTimeout(r, 300));

// QEMU's user networking goes on the command line through a wrapper (the VMM adapter only knows the stream netdev).
const userQemu = join(work, "qemu-user-net.sh");
// NETVM_PCAP (set per run below; QEMU inherits this process's environment) names the run's pcap file.
const dump = ' ${NETVM_PCAP:+-object filter-dump,id=fd0,netdev=n0,file="$NETVM_PCAP"}';
// --smp-plain rewrites the one `-smp` argument for both VMs (the shell's positional parameters, rebuilt in order).
const smpFilter = SMP_PLAIN ? `for a; do shift; [ "$a" = "1,maxcpus=2" ] && a=1; set -- "$@" "$a"; done\n` : "";
writeFileSync(userQemu, `#!/bin/sh\n${smpFilter}exec qemu-system-x86_64 "$@" -netdev user,id=n0,net=10.0.2.0/24${dump} -device virtio-net-device,netdev=n0,mac=${GUEST_MAC}\n`);
chmodSync(userQemu, 0o755);
const oursQemu = join(work, "qemu-ours.sh");
writeFileSync(oursQemu, `#!/bin/sh\n${smpFilter}exec qemu-system-x86_64 "$@"\n`);
chmodSync(oursQemu, 0o755);

const ipStr = (ip: number) => `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;

async function runVm(mode: Mode, run: string): Promise<Sample> {
  const runDir = join(work, `run-${run}`);
  mkdirSync(runDir);
  let stack: NetworkStack | undefined;
  let env: Record<string, string>;
  if (mode === "ours") {
    stack = new NetworkStack({ slot: 3, mtu: 1500, log: () => {}, policy: { hostPorts: [iperfPort, ports.echo] }, ...(PCAP_DIR ? { pcapPath: join(PCAP_DIR, `${run}.pcap`) } : {}) });
    await stack.listen(join(runDir, "net.sock"));
    const a = stack.addresses;
    const gw = ipStr(a.gatewayIp);
    env = { NET_ADDR: `${ipStr(a.guestIp)}/30`, NET_GW: gw, HOST: gw };
  } else {
    env = { NET_ADDR: "10.0.2.15/24", NET_GW: "10.0.2.2", HOST: "10.0.2.2" };
  }
  const mac = stack ? Array.from(stack.addresses.guestMac, (b) => b.toString(16).padStart(2, "0")).join(":") : GUEST_MAC;
  const vm = new QemuVmm({
    name: `netvm-${run}`,
    kernelPath: kernel.elfPath,
    root: { tag: "rootfs", hostDir: root },
    vcpus: 1,
    memoryBytes: 256 * 1024 * 1024,
    consoleLogPath: join(runDir, "console.log"),
    runDir,
    env: { ...env, RUN: run, IPERF_PORT: String(iperfPort), ECHO_PORT: String(ports.echo), SECS: String(SECONDS), PINGS: String(PINGS), ROWS: [...ROWS].join(",") },
    ...(stack ? { network: { socketPath: join(runDir, "net.sock"), mac }, ...(SMP_PLAIN ? { qemuPath: oursQemu } : {}) } : { qemuPath: userQemu }),
  });
  if (PCAP_DIR && !stack) process.env.NETVM_PCAP = join(PCAP_DIR, `${run}.pcap`);
  const cpu0 = process.cpuUsage();
  let retransmits = 0;
  let drops = 0;
  let dropReasons = "";
  try {
    await vm.start();
    await vm.waitForConsole((l) => l.includes("netvm-done"), 120_000 + SECONDS * 4_000);
    await vm.wait();
  } catch (err) {
    const consoleText = readFileSync(join(runDir, "console.log"), "utf8");
    const panic = kernelPanicSummary(consoleText);
    console.error(`  ${run}: ${(err as Error).message}${panic ? `; the guest kernel panicked: ${panic}` : `; console:\n${consoleText.slice(-2000)}`}`);
  } finally {
    if (KEEP_DIR && existsSync(join(runDir, "console.log"))) copyFileSync(join(runDir, "console.log"), join(KEEP_DIR, `${run}.console.log`));
    await vm.cleanup();
    if (stack) {
      retransmits = stack.counters.retransmits;
      drops = Object.values(stack.counters.drops).reduce((a, b) => a + b, 0);
      dropReasons = Object.entries(stack.counters.drops).map(([k, v]) => `${k} ${v}`).join(", ");
    }
    await stack?.close();
  }
  const cpu = process.cpuUsage(cpu0);
  const dir = join(root, "results", run);
  const read = (f: string) => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), "utf8") : "");
  const iperf = (f: string) => {
    try {
      return (JSON.parse(read(f)).end.sum_received.bits_per_second as number) / 1e6;
    } catch {
      console.error(`  ${run}/${f}: ${read(f).slice(0, 300)}`);
      return Number.NaN;
    }
  };
  if (run.endsWith("-1")) {
    const bits = read("features.txt").trim();
    const on = (i: number) => bits[i] === "1";
    console.error(`  ${mode} virtio-net features: CSUM ${on(0)}, GUEST_CSUM ${on(1)}, GUEST_TSO4 ${on(7)}, HOST_TSO4 ${on(11)} (${bits.slice(0, 16)}…)`);
  }
  return {
    fwdMbps: iperf("fwd.json"),
    revMbps: iperf("rev.json"),
    rttUs: Number(/rtt_us (\S+)/.exec(read("rtt.txt"))?.[1] ?? Number.NaN),
    connPerS: Number(/conn_per_s (\S+)/.exec(read("conn.txt"))?.[1] ?? Number.NaN),
    stackCpuS: (cpu.user + cpu.system) / 1e6,
    retransmits,
    drops,
    dropReasons,
  };
}

const samples: Record<Mode, Sample[]> = { ours: [], user: [] };
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of (round % 2 ? ["ours", "user"] : ["user", "ours"]) as Mode[]) {
      const s = await runVm(mode, `${mode}-${round}`);
      samples[mode].push(s);
      console.error(`round ${round} ${mode.padEnd(4)}: guest->host ${s.fwdMbps.toFixed(0)} Mbit/s, host->guest ${s.revMbps.toFixed(0)} Mbit/s, round trip ${s.rttUs} us, ${s.connPerS} conn/s${mode === "ours" ? `, stack CPU ${s.stackCpuS.toFixed(2)} s, ${s.retransmits} retransmits, ${s.drops} drops (${s.dropReasons})` : ""}`);
    }
  }
} finally {
  cleanup();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const fmt = (v: number) => (!Number.isFinite(v) ? "n/a" : v >= 100 ? v.toFixed(0) : v.toFixed(1));
const rows: Array<[string, "fwdMbps" | "revMbps" | "rttUs" | "connPerS", boolean]> = [
  ["bulk guest->host (Mbit/s)", "fwdMbps", true],
  ["bulk host->guest (Mbit/s)", "revMbps", true],
  ["TCP round trip median (us)", "rttUs", false],
  ["TCP connections/s sequential", "connPerS", true],
];
console.log(`\nTCG guest, 1 vCPU, MTU 1500, ${ROUNDS} interleaved round(s); ours = @iii/network via QEMU's stream netdev, qemu-user = -netdev user (slirp in QEMU)`);
console.log(["metric".padEnd(32), "ours".padStart(8), "qemu-user".padStart(10), "ratio min/med/max (rounds)".padStart(24)].join("  "));
// A round where either VM produced no number for a row (e.g. a guest that did not finish) is left out of that row.
const finite = (xs: number[]) => xs.filter((x) => Number.isFinite(x));
for (const [name, key, higher] of rows) {
  const ratios = finite(samples.ours.map((o, i) => (higher ? o[key] / samples.user[i]![key] : samples.user[i]![key] / o[key])));
  const r = ratios.length ? [Math.min(...ratios), median(ratios), Math.max(...ratios)].map((x) => x.toFixed(2)).join("/") : "n/a";
  const med = (xs: number[]) => (finite(xs).length ? median(finite(xs)) : Number.NaN);
  console.log([name.padEnd(32), fmt(med(samples.ours.map((s) => s[key]))).padStart(8), fmt(med(samples.user.map((s) => s[key]))).padStart(10), `${r} (${ratios.length})`.padStart(24)].join("  "));
}
console.log(`our stack's process CPU per VM run (median): ${median(samples.ours.map((s) => s.stackCpuS)).toFixed(2)} s (the guest's runs take ~${4 * SECONDS} s plus boot)`);
console.log("ratio > 1: ours is better (throughput/rate: ours/qemu-user; latency: qemu-user/ours).");
// No process.exit here: run-ts.mjs removes its bundle after this module returns (the servers are killed above).
