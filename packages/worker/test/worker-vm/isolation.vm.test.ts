// The guest as the attacker. Every test here performs an attack a hostile workload would try, against a real
// TCG guest booted through the real CLI, and asserts that the defence holds on the host. Read top to bottom:
//   1. host privilege from guest files (setuid, setgid, file capabilities, device nodes) on the root, a -m share
//      and dev mode's /workspace and dependency share
//   2. reaching the host or special ranges through the network stack; modes and rule precedence
//   3. limits: CPU quota, pids limit (fork bomb), exec inside the worker's cgroup, disk (filling the host)
//   4. lifecycle: remove of a running worker, project scoping, a dead child of the VM
// All traffic stays on this machine: the special-range targets live in a network namespace this file creates.
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { processCpuShare, WORKER_CLI } from "../helpers.js";
import { QEMU_UID_COUNT, qemuUidBase } from "../../src/vmm/qemu-confine.js";
import { HOST_LEASE_DIR } from "../../src/host/qemu-uid-lease.js";
import { debianRootfs, mountsUnder, processesMentioning, Project, vmSkipReason, waitFor } from "./harness.js";

const REPO = fileURLToPath(new URL("../../../..", import.meta.url));
const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping isolation VM tests: ${skip}`);

/** Runs `cmd` as an unprivileged host user (nobody), as a host user attacking what the guest left would. */
function asNobody(cmd: string[]): { code: number | null; out: string } {
  const r = spawnSync("setpriv", ["--reuid", "65534", "--regid", "65534", "--clear-groups", "--", ...cmd], { encoding: "utf8" });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Everything under `dir` that a host process could use for privilege: setuid/setgid files, device/FIFO/socket nodes. */
function privilegedEntries(dir: string, runAs: "root" | "nobody"): string {
  const find = ["find", dir, "(", "-perm", "/6000", "-o", "-type", "b", "-o", "-type", "c", "-o", "-type", "p", "-o", "-type", "s", ")", "-printf", "%M %p\\n"];
  if (runAs === "nobody") return asNobody(find).out.trim();
  return execFileSync(find[0]!, find.slice(1), { encoding: "utf8" }).trim();
}

/** `security.*` xattrs (file capabilities) on any host file under `dir`. */
function securityXattrs(dir: string): string {
  return spawnSync("getfattr", ["-R", "-h", "-d", "-m", "^security\\.", "--absolute-names", dir], { encoding: "utf8" }).stdout.trim();
}

// The attacker's script: on each target directory, a setuid-root and a setgid shell, a shell with file
// capabilities, char devices for /dev/mem and /dev/urandom, a block device for the first disk, a FIFO.
const PLANT = `
plant() { d=$1; mkdir -p "$d"
  cp /bin/bash "$d/suidsh" && chown 0:0 "$d/suidsh" && chmod 4755 "$d/suidsh"
  cp /bin/bash "$d/sgidsh" && chmod 2755 "$d/sgidsh"
  cp /bin/bash "$d/capsh" && setcap cap_setuid,cap_dac_override+ep "$d/capsh"
  mknod "$d/mem" c 1 1 && chmod 666 "$d/mem"
  mknod "$d/rnd" c 1 8 && chmod 666 "$d/rnd"
  mknod "$d/disk" b 8 0
  mkfifo "$d/fifo"
}
show() { d=$1; for f in suidsh sgidsh mem rnd disk fifo; do stat -c "$d %n %A %t,%T %u:%g" "$d/$f"; done; echo "$d cap $(getcap "$d/capsh")"; echo "$d rnd-bytes $(head -c 16 "$d/rnd" | wc -c)"; }
`;

describe.skipIf(!!skip)("isolation: the guest as the attacker (vm)", () => {
  let rootfs: string;
  const projects: Project[] = [];
  const project = (env: NodeJS.ProcessEnv = {}) => {
    const p = new Project(env);
    chmodSync(p.dir, 0o755); // a host user must be able to look at the share dirs inside it
    projects.push(p);
    return p;
  };
  beforeAll(() => {
    rootfs = debianRootfs();
  }, 900_000);
  afterAll(async () => {
    // Newest first: a project sharing another's III_HOME must stop before that home is deleted.
    for (const p of projects.reverse()) await p.dispose();
  });

  async function started(p: Project, name: string, addArgs: string[], startArgs: string[] = []): Promise<void> {
    const add = await p.cli(["add", `dir:${rootfs}`, "--name", name, ...addArgs]);
    expect(add.code, add.stderr).toBe(0);
    const start = await p.cli(["start", name, ...startArgs]);
    expect(start.code, start.stderr + p.diagnostics(name)).toBe(0);
  }

  // ---------------------------------------------------------------- 1. host privilege from guest files
  it("setuid/setgid files, file capabilities and device nodes planted on the root and a -m share are inert on the host, intact in the guest", async () => {
    const p = project();
    const share = join(p.dir, "share");
    mkdirSync(share);
    chownSync(share, 1000, 1000);
    await started(p, "plant", ["-m", `${share}:/data`, "--", "bash", "-c", `${PLANT} plant /data; plant /planted; echo PLANTED; sleep 100000`]);
    await waitFor(() => p.read("managed/plant/logs/stdout.log").includes("PLANTED"), 60_000, "the plant");
    expect(p.read("managed/plant/logs/stderr.log")).toBe("");

    // In the guest, everything is as the guest made it.
    const seen = await p.cli(["exec", "plant", "--", "bash", "-c", `${PLANT} show /data; show /planted`]);
    expect(seen.code, seen.stderr).toBe(0);
    for (const d of ["/data", "/planted"]) {
      expect(seen.stdout).toContain(`${d} ${d}/suidsh -rwsr-xr-x 0,0 0:0`);
      expect(seen.stdout).toContain(`${d} ${d}/sgidsh -rwxr-sr-x 0,0 0:0`);
      expect(seen.stdout).toContain(`${d} ${d}/mem crw-rw-rw- 1,1 0:0`);
      expect(seen.stdout).toContain(`${d} ${d}/rnd crw-rw-rw- 1,8 0:0`);
      expect(seen.stdout).toContain(`${d} ${d}/disk brw-r--r-- 8,0 0:0`);
      expect(seen.stdout).toMatch(new RegExp(`${d} ${d}/fifo prw-r--r-- 0,0 0:0`));
      expect(seen.stdout).toMatch(new RegExp(`${d} cap ${d}/capsh cap_dac_override,cap_setuid=ep`));
      expect(seen.stdout).toContain(`${d} rnd-bytes 16`); // the planted node is the guest's own /dev/urandom
    }

    // On the host: a non-root user finds nothing usable in the share.
    expect(privilegedEntries(share, "nobody")).toBe("");
    expect(securityXattrs(share)).toBe("");
    const suid = asNobody([join(share, "suidsh"), "-p", "-c", "id -u"]);
    expect(suid.out.trim()).not.toBe("0");
    expect(readFileSync(join(share, "mem")).length).toBe(0); // a plain empty file, not the host's /dev/mem
    // New files in a user's directory belong to that user on the host, not to root.
    for (const f of ["suidsh", "rnd", "fifo"]) expect(execFileSync("stat", ["-c", "%u:%g", join(share, f)], { encoding: "utf8" }).trim()).toBe("1000:1000");

    // The root filesystem's writable layer: host users cannot even reach it, and it holds nothing usable either.
    const managed = join(p.home, "managed");
    const enter = asNobody(["ls", managed]);
    expect(enter.code).not.toBe(0);
    expect(enter.out).toMatch(/Permission denied/);
    const upper = join(p.managed("plant"), "upper");
    expect(existsSync(join(upper, "planted", "suidsh"))).toBe(true);
    expect(privilegedEntries(upper, "root")).toBe("");
    expect(securityXattrs(upper)).toBe("");
    expect((await p.cli(["stop", "plant", "--timeout", "1"])).code).toBe(0);
  }, 300_000);

  it("dev mode: what the guest plants in /workspace and the dependency share is inert on the host", async () => {
    const image = `oci:${execFileSync(join(REPO, "images/build.sh"), ["node"], { encoding: "utf8", timeout: 900_000 }).trim()}:latest`;
    const p = project();
    const dir = join(p.dir, "attacker");
    mkdirSync(join(dir, "src"), { recursive: true });
    writeFileSync(join(dir, "iii.worker.yaml"), "name: attacker\nruntime:\n  language: node\n  packageManager: npm\nscripts:\n  install: \"echo installed\"\n  start: node src/index.js\n");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "attacker", version: "1.0.0", private: true }));
    const plant = [
      "const { execFileSync } = require('node:child_process');",
      "const sh = (s) => execFileSync('bash', ['-c', s], { stdio: 'inherit' });",
      // dist/ (in /workspace) and node_modules/ (the dependency share) are dirs the watcher ignores, so planting
      // there does not restart the workload.
      "for (const d of ['/workspace/dist/loot', '/workspace/node_modules/loot']) sh(`rm -rf ${d} && mkdir -p ${d} && cp /bin/bash ${d}/suidsh && chmod 4755 ${d}/suidsh && mknod ${d}/rnd c 1 8 && chmod 666 ${d}/rnd && mknod ${d}/disk b 8 0 && stat -c '%n %A' ${d}/suidsh ${d}/rnd`);",
      "console.log('PLANTED'); setInterval(() => {}, 1000);",
    ].join("\n");
    writeFileSync(join(dir, "src/index.js"), plant);
    chmodSync(dir, 0o755);
    let out = "";
    const child: ChildProcess = spawn(process.execPath, [WORKER_CLI, "dev", dir], { cwd: p.dir, env: { ...process.env, ...p.env, III_DEV_IMAGE_NODE: image }, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      await waitFor(() => out.includes("PLANTED") || child.exitCode !== null, 300_000, "the dev workload to plant").catch((error: Error) => {
        throw new Error(`${error.message}; dev output: ${out.slice(-2000)}`);
      });
      expect(out, out.slice(-2000)).toContain("PLANTED");
      expect(out).toContain("/workspace/dist/loot/suidsh -rwsr-xr-x");
      expect(out).toContain("/workspace/node_modules/loot/rnd crw-rw-rw-");
      expect(existsSync(join(dir, "dist", "loot", "suidsh"))).toBe(true);
      expect(existsSync(join(dir, "node_modules", "loot", "rnd"))).toBe(true);
      expect(privilegedEntries(dir, "nobody")).toBe("");
      expect(asNobody([join(dir, "dist", "loot", "suidsh"), "-p", "-c", "id -u"]).out.trim()).not.toBe("0");
    } finally {
      child.kill("SIGINT");
      await exited;
    }
  }, 600_000);

  // ---------------------------------------------------------------- 2. the network
  describe("network: no way into the host or special ranges", () => {
    const NS = `iiiiso${process.pid % 10000}`;
    const HOST_VETH = `iiih${process.pid % 10000}`;
    const PORT = 18_000 + (process.pid % 2000);
    const HOST_PORT_OPEN = PORT + 1;
    // One unicast address of each special-purpose range (and two public-looking ones), each in our namespace.
    const SPECIAL: Array<[string, string]> = [
      ["10.0.0.0/8", "10.254.7.1"],
      ["100.64.0.0/10", "100.64.7.1"],
      ["169.254.0.0/16", "169.254.7.1"],
      ["172.16.0.0/12", "172.16.7.1"],
      ["192.0.0.0/24", "192.0.0.77"],
      ["192.0.2.0/24", "192.0.2.7"],
      ["192.168.0.0/16", "192.168.254.7"],
      ["198.18.0.0/15", "198.18.7.1"],
      ["198.51.100.0/24", "198.51.100.7"],
      ["203.0.113.0/24", "203.0.113.7"],
      ["240.0.0.0/4", "240.0.7.1"],
    ];
    const PUBLIC_OK = "11.7.0.1";
    const PUBLIC_DENIED = "11.7.1.1";
    const servers: Server[] = [];
    const children: ChildProcess[] = [];
    let dnsUpstream = "";
    let hostAddresses: string[] = [];

    const sh = (cmd: string) => execFileSync("sh", ["-c", cmd], { stdio: "pipe" });
    beforeAll(async () => {
      // A namespace behind a veth pair holds the targets: they are reachable from the host (so a broken
      // defence shows up as a successful local connection) without being addresses of the host itself.
      sh(`ip netns add ${NS}`);
      sh(`ip link add ${HOST_VETH} type veth peer name eth0 netns ${NS}`);
      sh(`ip link set ${HOST_VETH} up`);
      sh(`ip -n ${NS} link set lo up && ip -n ${NS} link set eth0 up`);
      for (const [, ip] of [...SPECIAL, ["", PUBLIC_OK], ["", PUBLIC_DENIED]] as Array<[string, string]>) {
        sh(`ip -n ${NS} addr add ${ip}/32 dev eth0`);
        sh(`ip route add ${ip}/32 dev ${HOST_VETH}`);
      }
      sh(`ip -n ${NS} route add default dev eth0`);
      // Never probe an address that would leave this machine: each target must route into our namespace.
      for (const [, ip] of [...SPECIAL, ["", PUBLIC_OK], ["", PUBLIC_DENIED]] as Array<[string, string]>) {
        const route = execFileSync("ip", ["route", "get", ip], { encoding: "utf8" });
        if (!route.includes(`dev ${HOST_VETH}`)) throw new Error(`target ${ip} does not route into the test namespace: ${route}`);
      }
      const server = spawn("ip", ["netns", "exec", NS, process.execPath, "-e", `require("node:http").createServer((q, s) => s.end("LEAK " + q.socket.localAddress)).listen(${PORT}, "0.0.0.0", () => console.log("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
      children.push(server);
      await new Promise<void>((resolve) => server.stdout!.once("data", () => resolve()));
      // A host service bound to every host address, and one loopback service the worker may be given.
      const anyAddress = createServer((q, s) => s.end(`LEAK host ${q.socket.localAddress}`));
      await new Promise<void>((r) => anyAddress.listen(PORT, "0.0.0.0", r));
      const open = createServer((_, s) => s.end("host-port-ok"));
      await new Promise<void>((r) => open.listen(HOST_PORT_OPEN, "127.0.0.1", r));
      servers.push(anyAddress, open);
      hostAddresses = Object.values(networkInterfaces()).flat().filter((a) => a && a.family === "IPv4" && !a.internal).map((a) => a!.address);
      // The DNS upstream of the VMs' interceptor: names for the allow-list test, on loopback.
      const dnsAddress = `127.0.0.${60 + (process.pid % 150)}`;
      const dnsPort = 21_000 + (process.pid % 20_000);
      const dns = spawn("dnsmasq", ["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", `--listen-address=${dnsAddress}`, `--port=${dnsPort}`,
        `--host-record=allowed.test.iii,${PUBLIC_OK}`, `--host-record=other.test.iii,${PUBLIC_DENIED}`, "--log-facility=-"], { stdio: "ignore" });
      children.push(dns);
      await new Promise((r) => setTimeout(r, 300));
      dnsUpstream = `${dnsAddress}:${dnsPort}`;
    }, 60_000);
    afterAll(() => {
      for (const c of children) c.kill();
      for (const s of servers) s.close();
      spawnSync("ip", ["link", "del", HOST_VETH]);
      spawnSync("ip", ["netns", "del", NS]);
      for (const [, ip] of [...SPECIAL, ["", PUBLIC_OK], ["", PUBLIC_DENIED]] as Array<[string, string]>) spawnSync("ip", ["route", "del", `${ip}/32`]);
    });

    /** curl from the guest: `<target> rc=<curl exit> t=<seconds> body=<what answered>` per target. */
    async function probe(p: Project, name: string, targets: string[]): Promise<Map<string, { rc: number; seconds: number; body: string }>> {
      const script = targets.map((t) => `b=$(curl -g -s -m 3 -w ' t=%{time_total}' http://${t}/); echo "${t} rc=$? $b"`).join("; ");
      const run = await p.cli(["exec", name, "--", "bash", "-c", script]);
      expect(run.code, run.stderr).toBe(0);
      const results = new Map<string, { rc: number; seconds: number; body: string }>();
      for (const line of run.stdout.trim().split("\n")) {
        const m = /^(\S+) rc=(\d+) (.*?)\s*t=([\d.]+)$/.exec(line);
        if (m) results.set(m[1]!, { rc: Number(m[2]), body: m[3]!, seconds: Number(m[4]) });
      }
      return results;
    }

    function expectRefused(results: Map<string, { rc: number; seconds: number; body: string }>, target: string): void {
      const r = results.get(target);
      expect(r, `no probe result for ${target}`).toBeDefined();
      expect(r!.body, `${target} answered`).not.toContain("LEAK");
      expect(r!.rc, `${target}: curl exit ${r!.rc} (7 = refused, 28 = timed out)`).toBe(7);
      expect(r!.seconds, `${target} refused after ${r!.seconds} s`).toBeLessThan(0.2);
    }

    it("public mode: every host address and every special range is refused at once; --host-port opens exactly that port", async () => {
      const p = project({ III_DNS_UPSTREAM: dnsUpstream });
      await started(p, "net", ["--host-port", String(HOST_PORT_OPEN), "--", "sleep", "100000"], ["--engine-url", "ws://engine.invalid:1"]);
      const gw = (await p.cli(["exec", "net", "--", "getent", "hosts", "host.iii.internal"])).stdout.split(/\s+/)[0]!;
      expect(gw).toMatch(/^100\.\d+\.\d+\.\d+$/);
      // IPv6 is not relayed: a link-local or documentation address fails at once instead of hanging.
      const targets = [...hostAddresses.map((a) => `${a}:${PORT}`), ...SPECIAL.map(([, ip]) => `${ip}:${PORT}`), `${gw}:${PORT}`, `127.0.0.1:${PORT}`, `[fe80::1%25eth0]:${PORT}`, `[2001:db8::7]:${PORT}`];
      const results = await probe(p, "net", [...targets, `${gw}:${HOST_PORT_OPEN}`, `${PUBLIC_OK}:${PORT}`]);
      for (const t of targets) expectRefused(results, t);
      expect(results.get(`${gw}:${HOST_PORT_OPEN}`)).toMatchObject({ rc: 0, body: "host-port-ok" });
      // A public address is allowed in public mode (it is on this machine, in our namespace).
      expect(results.get(`${PUBLIC_OK}:${PORT}`)).toMatchObject({ rc: 0, body: `LEAK ${PUBLIC_OK}` });
      const log = p.read("managed/net/logs/supervisor.log");
      expect(log).toMatch(new RegExp(`denied tcp \\S+ -> 192\\.0\\.2\\.7:${PORT} by \\S+`));
      if (hostAddresses[0]) expect(log).toContain(`${hostAddresses[0]}:${PORT}`);
    }, 240_000);

    it("none mode with --allow name:port: that name resolves and connects; other names are REFUSED; other addresses refused", async () => {
      const p = project({ III_DNS_UPSTREAM: dnsUpstream });
      await started(p, "locked", ["--network", "none", "--allow", `allowed.test.iii:${PORT}`, "--", "sleep", "100000"], ["--engine-url", "ws://engine.invalid:1"]);
      const dns = await p.cli(["exec", "locked", "--", "bash", "-c", "getent hosts allowed.test.iii; echo allowed-rc=$?; getent hosts other.test.iii; echo other-rc=$?"]);
      expect(dns.stdout).toContain(`${PUBLIC_OK}`);
      expect(dns.stdout).toContain("allowed-rc=0");
      expect(dns.stdout).toContain("other-rc=2");
      expect(dns.stdout).not.toContain(PUBLIC_DENIED);
      const results = await probe(p, "locked", [`allowed.test.iii:${PORT}`, `${PUBLIC_DENIED}:${PORT}`, `${PUBLIC_OK}:${PORT + 5}`]);
      expect(results.get(`allowed.test.iii:${PORT}`)).toMatchObject({ rc: 0, body: `LEAK ${PUBLIC_OK}` });
      expectRefused(results, `${PUBLIC_DENIED}:${PORT}`);
      expectRefused(results, `${PUBLIC_OK}:${PORT + 5}`);
      expect(p.read("managed/locked/logs/supervisor.log")).toMatch(/other\.test\.iii.*REFUSED|REFUSED.*other\.test\.iii/);
    }, 240_000);

    it("public mode --deny CIDR denies that range only; the most specific rule wins over a broad deny", async () => {
      const p = project({ III_DNS_UPSTREAM: dnsUpstream });
      await started(p, "deny", ["--deny", "11.7.1.0/24", "--", "sleep", "100000"], ["--engine-url", "ws://engine.invalid:1"]);
      const r1 = await probe(p, "deny", [`${PUBLIC_OK}:${PORT}`, `${PUBLIC_DENIED}:${PORT}`]);
      expect(r1.get(`${PUBLIC_OK}:${PORT}`)).toMatchObject({ rc: 0 });
      expectRefused(r1, `${PUBLIC_DENIED}:${PORT}`);
      await started(p, "narrow", ["--deny", "0.0.0.0/0", "--allow", `${PUBLIC_DENIED}:${PORT}`, "--", "sleep", "100000"], ["--engine-url", "ws://engine.invalid:1"]);
      const r2 = await probe(p, "narrow", [`${PUBLIC_OK}:${PORT}`, `${PUBLIC_DENIED}:${PORT}`]);
      expect(r2.get(`${PUBLIC_DENIED}:${PORT}`)).toMatchObject({ rc: 0, body: `LEAK ${PUBLIC_DENIED}` });
      expectRefused(r2, `${PUBLIC_OK}:${PORT}`);
    }, 240_000);
  });

  // ---------------------------------------------------------------- 3. limits
  it("--cpus 500m holds a busy loop to about half a CPU, in the guest's cgroup and on the host; root in the guest cannot lift its limits", async () => {
    const p = project();
    // A static clone3(CLONE_INTO_CGROUP) prober for the guest, on a read-only share.
    const tools = join(p.dir, "tools");
    mkdirSync(tools);
    execFileSync("gcc", ["-static", "-O2", "-o", join(tools, "c3"), fileURLToPath(new URL("../fixtures/clone3-into-cgroup.c", import.meta.url))]);
    // and a request_key(2) caller: the kernel answers a missing key by running /sbin/request-key as a usermode helper
    execFileSync("gcc", ["-static", "-O2", "-o", join(tools, "rk"), fileURLToPath(new URL("../fixtures/request-key.c", import.meta.url))]);
    await started(p, "busy", ["--cpus", "500m", "-m", `${tools}:/t:ro`, "--", "bash", "-c", "while :; do :; done"]);
    await new Promise((r) => setTimeout(r, 2_000));
    const script = [
      "g=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)", // the exec's own group: inside the worker's
      "w=$g; while [ \"$w\" != /sys/fs/cgroup ] && [ \"$(cat $w/cpu.max 2>/dev/null)\" = 'max 100000' -o ! -e $w/cpu.max ]; do w=$(dirname $w); done",
      "echo cpumax=$(cat $w/cpu.max)",
      "u1=$(awk '/usage_usec/ {print $2}' $w/cpu.stat); t1=$(date +%s%N); sleep 4; u2=$(awk '/usage_usec/ {print $2}' $w/cpu.stat); t2=$(date +%s%N)",
      "echo share=$(( (u2 - u1) * 1000 / ((t2 - t1) / 1000) ))", // per mille of one CPU
    ].join("; ");
    const run = await p.cli(["exec", "busy", "--", "bash", "-c", script]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("cpumax=50000 100000");
    const share = Number(/share=(\d+)/.exec(run.stdout)?.[1]);
    console.log(`[isolation] busy loop under --cpus 500m: ${share / 10}% of one CPU`);
    // The attack: root in the guest lifts its own limits or leaves its group, remounts the cgroup tree, mounts a
    // new one, reaches init's view through /proc/1/root, clones into the root group, has the kernel run its
    // program, makes a user namespace, or uses a capability a workload has no need of. Each is refused (init:
    // iii_sys.c confine_child, the sysctl step).
    const attempts = [
      "echo max > /sys/fs/cgroup/worker/cpu.max",
      "echo max > /sys/fs/cgroup/worker/pids.max",
      "echo $$ > /sys/fs/cgroup/cgroup.procs",
      "mount -o remount,rw /sys/fs/cgroup",
      "mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg",
      "ls /proc/1/root/sys/fs/cgroup",
      "nsenter -t 1 -m true",
      // a child born straight into the root group: CLONE_INTO_CGROUP takes a directory fd, whatever the mount
      "/t/c3 /sys/fs/cgroup | grep -q '^child cgroup: 0::/$'",
      // programs the kernel would run with every privilege, outside the group
      "echo '|/bin/true' > /proc/sys/kernel/core_pattern",
      "echo /bin/true > /sys/kernel/uevent_helper",
      // a usermode helper the workload writes itself (the root filesystem is its own) and has the kernel run: every
      // capability, init's mount namespace (it read /dev/mem before request_key was refused). Passes if it ran.
      "printf '#!/bin/sh\\ntouch /umh-ran\\n' > /sbin/request-key && chmod 755 /sbin/request-key && /t/rk && sleep 1 && test -e /umh-ran",
      // a user namespace, in which root would get its mount capabilities back
      "unshare -Urm --cgroup true",
      // the guest kernel's memory and the devices' registers (CAP_SYS_RAWIO): every in-guest limit with them
      "head -c 1 /dev/mem",
      "dd if=/dev/port of=/dev/null bs=1 count=1 skip=112",
      // the guest's clock (CAP_SYS_TIME); set to now, so it harms nothing if it passed
      "date -s @$(date +%s)",
    ];
    const lift = await p.cli(["exec", "busy", "--", "bash", "-c", `${attempts.map((a, i) => `(${a}) >/dev/null 2>&1; echo "attempt${i}=$?"`).join("; ")}; echo "cpumax=$(cat /sys/fs/cgroup/worker/cpu.max)"; echo "cap=$(grep CapBnd /proc/self/status)"`]);
    expect(lift.code, lift.stderr).toBe(0);
    for (let i = 0; i < attempts.length; i++) {
      const code = Number(new RegExp(`attempt${i}=(\\d+)`).exec(lift.stdout)?.[1]);
      expect(code > 0 && code < 127, `${attempts[i]}: exit ${code} (127 would be a missing tool, not a refusal)`).toBe(true);
    }
    expect(lift.stdout).toContain("cpumax=50000 100000");
    // Docker's default capability set and nothing more (@iii/init DEFAULT_CAPABILITIES)
    expect(lift.stdout).toMatch(/cap=CapBnd:\s+00000000a80425fb/);
    const sysctls = await p.cli(["exec", "busy", "--", "cat", "/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_bpf_disabled", "/proc/sys/kernel/kptr_restrict", "/proc/sys/kernel/dmesg_restrict", "/proc/sys/kernel/usermodehelper/bset", "/proc/sys/kernel/usermodehelper/inheritable", "/proc/sys/kernel/io_uring_disabled"]);
    expect(sysctls.stdout.split(/\s+/).filter(Boolean)).toEqual(["0", "1", "1", "1", "0", "0", "0", "0", "2"]);
    expect((await p.cli(["exec", "busy", "--", "grep", "-c", "umh-ran", "/sbin/request-key"])).stdout.trim()).toBe("1"); // it was planted
    expect((await p.cli(["exec", "busy", "--", "cat", "/sys/kernel/uevent_helper"])).stdout.trim()).toBe("");
    // and the host's quota (the layer under it, attacked alone in test/vm/devices.vm.test.ts) holds QEMU there
    const vm = JSON.parse(p.read("managed/busy/vm.json")) as { children: { name: string; pid: number }[] };
    const qemuPid = vm.children.find((c) => c.name === "qemu")!.pid;
    const hostShare = await processCpuShare(qemuPid, 4_000);
    console.log(`[isolation] QEMU on the host: ${(hostShare * 100).toFixed(0)}% of one CPU; ${lift.stdout.match(/cap=.*/)?.[0]}`);
    expect((await p.cli(["stop", "busy", "--timeout", "1"])).code).toBe(0); // free the CPU for the next tests
    expect(share).toBeGreaterThanOrEqual(400);
    expect(share).toBeLessThanOrEqual(600);
    expect(hostShare).toBeLessThanOrEqual(0.6);
  }, 180_000);

  it("--cap-add / --cap-drop change what root in the workload and its execs may hold: SYS_TIME sets the clock, NET_RAW is gone", async () => {
    const p = project();
    const add = await p.cli(["add", `dir:${rootfs}`, "--name", "caps", "--cap-add", "sys_time", "--cap-drop", "CAP_NET_RAW", "--", "bash", "-c", "grep CapBnd /proc/self/status; sleep 100000"]);
    expect(add.code, add.stderr).toBe(0);
    expect(add.stderr).toContain("workload capabilities: Docker's default set +SYS_TIME -NET_RAW");
    const start = await p.cli(["start", "caps"]);
    expect(start.code, start.stderr + p.diagnostics("caps")).toBe(0);
    // Docker's a80425fb, plus SYS_TIME (bit 25), without NET_RAW (bit 13)
    const want = /CapBnd:\s+00000000aa0405fb/;
    await waitFor(() => want.test(p.read("managed/caps/logs/stdout.log")), 30_000, "the workload's CapBnd line");
    const exec = await p.cli(["exec", "caps", "--", "bash", "-c", "grep CapBnd /proc/self/status; date -s @$(date +%s) >/dev/null && echo clock-set"]);
    expect(exec.code, exec.stderr).toBe(0);
    expect(exec.stdout).toMatch(want);
    expect(exec.stdout).toContain("clock-set");
    expect((await p.cli(["stop", "caps", "--timeout", "1"])).code).toBe(0);
  }, 120_000);

  it("a fork bomb stops at the pids limit: exec answers within 5 s, exec'd processes are in the worker's cgroup, stop ends it within grace + 5 s", async () => {
    const p = project();
    await started(p, "bomb", ["--", "bash", "-c", "echo armed; f() { f | f & }; f; sleep 100000"]);
    await waitFor(() => p.read("managed/bomb/logs/stdout.log").includes("armed"), 30_000, "the bomb");
    await new Promise((r) => setTimeout(r, 5_000));
    let t = Date.now();
    const alive = await p.cli(["exec", "bomb", "--", "true"]);
    const execMs = Date.now() - t;
    console.log(`[isolation] exec true under a fork bomb: ${execMs} ms, exit ${alive.code}`);
    expect(alive.code, alive.stderr).toBe(0);
    expect(execMs).toBeLessThan(5_000);
    const where = await p.cli(["exec", "bomb", "--", "cat", "/proc/self/cgroup"]);
    expect(where.stdout.trim()).not.toBe("0::/");
    const count = await p.cli(["exec", "bomb", "--", "bash", "-c", "g=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup); echo $(cat $(dirname $g)/pids.current) $(cat $(dirname $g)/pids.max)"]);
    console.log(`[isolation] pids under the bomb (current max): ${count.stdout.trim()}`);
    t = Date.now();
    const stop = await p.cli(["stop", "bomb", "--timeout", "2"]);
    const stopMs = Date.now() - t;
    console.log(`[isolation] stop --timeout 2 under a fork bomb: ${stopMs} ms`);
    expect(stop.code, stop.stderr).toBe(0);
    expect(stopMs).toBeLessThan(2_000 + 5_000);
  }, 240_000);

  it("--disk 64Mi: filling the root fails with ENOSPC and the host's upper stays under the bound; deleting gives space back; an open unlinked file, a sparse file count; df shows the bound", async () => {
    const MiB = 2 ** 20;
    const p = project();
    await started(p, "disk", ["--disk", "64Mi", "--", "sleep", "100000"]);
    const upper = join(p.managed("disk"), "upper");
    const guest = async (script: string): Promise<string> => {
      const run = await p.cli(["exec", "disk", "--", "sh", "-c", script]);
      expect(run.code, run.stderr + p.diagnostics("disk")).toBe(0);
      return run.stdout;
    };
    /** The upper layer on the host: logical bytes (du -sb: a sparse file in full) and allocated bytes (st_blocks). */
    const hostUse = () => ({
      logical: Number(execFileSync("du", ["-sb", upper], { encoding: "utf8" }).split(/\s/)[0]),
      allocated: Number(execFileSync("du", ["-s", "--block-size=1", upper], { encoding: "utf8" }).split(/\s/)[0]),
    });

    // (e) df in the guest reports the bound as the root's size.
    const df = await guest("df -k / | tail -n 1");
    const sizeKiB = Number(df.trim().split(/\s+/)[1]);
    console.log(`[isolation] df -k / under --disk 64Mi: ${df.trim()}`);
    expect(Math.abs(sizeKiB - 64 * 1024), df).toBeLessThanOrEqual(64 * 1024 * 0.05);

    // (a) The attack: 200 MiB of zeros into the root. The guest gets ENOSPC; the host holds no more than the bound.
    const fill = await guest("dd if=/dev/zero of=/big bs=1M count=200 2>&1; echo rc=$?");
    expect(fill).toMatch(/No space left on device/);
    expect(fill).not.toMatch(/rc=0$/m);
    const used = hostUse();
    console.log(`[isolation] upper after dd of 200 MiB under --disk 64Mi: ${used.logical} bytes logical, ${used.allocated} allocated`);
    expect(used.logical).toBeLessThan(64 * MiB + 8 * MiB);
    expect(used.allocated).toBeLessThan(64 * MiB + 8 * MiB);

    // (b) Deleting gives the space back.
    expect(await guest("rm /big && dd if=/dev/zero of=/again bs=1M count=16 2>&1; echo rc=$?; rm -f /again")).toMatch(/rc=0$/m);

    // (c) A file kept open after its unlink still holds its blocks (else: write, unlink, write again, unbounded).
    const held = await guest("exec 3>/a; dd if=/dev/zero bs=1M count=40 >&3 2>/dev/null; rm /a; dd if=/dev/zero of=/b bs=1M count=40 2>&1; echo rc=$?; exec 3>&-; rm -f /b");
    expect(held).toMatch(/No space left on device/);
    expect(held).toMatch(/rc=[1-9]\d*$/m);
    // Once it is closed, its space is back too.
    expect(await guest("dd if=/dev/zero of=/c bs=1M count=40 2>&1; echo rc=$?; rm -f /c")).toMatch(/rc=0$/m);

    // (d) A sparse file counts at its logical size: a 1 TiB hole is refused, not allocated later page by page.
    const sparse = await guest("truncate -s 1T /sparse 2>&1; echo rc=$?; rm -f /sparse");
    expect(sparse).toMatch(/No space|ENOSPC/);
    expect(sparse).toMatch(/rc=[1-9]\d*$/m);
    expect(hostUse().logical).toBeLessThan(8 * MiB);
    expect((await p.cli(["stop", "disk", "--timeout", "1"])).code).toBe(0);
  }, 300_000);

  // ---------------------------------------------------------------- 4. lifecycle
  it("remove refuses a running worker and changes nothing; remove -f leaves no QEMU, virtiofsd, mount or managed dir; a re-added name starts clean", async () => {
    const p = project();
    await started(p, "rm", ["--", "bash", "-c", "echo secret > /root/left-behind; echo up; sleep 100000"]);
    await waitFor(() => p.read("managed/rm/logs/stdout.log").includes("up"), 30_000, "the workload");
    const yaml = readFileSync(join(p.dir, "iii.workers.yaml"), "utf8");
    const refused = await p.cli(["remove", "rm"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/running.*--force/);
    expect(readFileSync(join(p.dir, "iii.workers.yaml"), "utf8")).toBe(yaml);
    expect(JSON.parse((await p.cli(["list", "--json"])).stdout)[0]).toMatchObject({ name: "rm", status: "running" });
    const vm = JSON.parse(p.read("managed/rm/vm.json")) as { children: { pid: number }[] };
    const forced = await p.cli(["remove", "-f", "rm", "--timeout", "1"]);
    expect(forced.code, forced.stderr).toBe(0);
    for (const child of vm.children) expect(existsSync(`/proc/${child.pid}`), `child ${child.pid} still running`).toBe(false);
    expect(processesMentioning(p.managed("rm"))).toEqual([]);
    expect(mountsUnder(p.managed("rm"))).toEqual([]);
    expect(existsSync(p.managed("rm"))).toBe(false);
    await started(p, "rm", ["--", "bash", "-c", "test -e /root/left-behind && echo INHERITED || echo CLEAN; sleep 100000"]);
    await waitFor(() => /CLEAN|INHERITED/.test(p.read("managed/rm/logs/stdout.log")), 30_000, "the check");
    expect(p.read("managed/rm/logs/stdout.log")).toContain("CLEAN");
  }, 240_000);

  // ---------------------------------------------------------------- QEMU itself (src/vmm/qemu-confine.test.ts attacks it)
  it("a worker's QEMU runs confined once the VM is up: a uid/gid of its own, no capabilities, seccomp, an empty read-only root", async () => {
    const p = project();
    await started(p, "qemu", ["--", "sleep", "100000"]);
    const qemuStatus = (q: Project, name: string) => {
      const vm = JSON.parse(q.read(`managed/${name}/vm.json`)) as { slot: number; children: { name: string; pid: number }[] };
      const pid = vm.children.find((c) => c.name === "qemu")?.pid;
      expect(pid, JSON.stringify(vm.children)).toBeDefined();
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const field = (f: string) => new RegExp(`^${f}:\\s+(.*)$`, "m").exec(status)?.[1]?.trim().split(/\s+/);
      return { pid: pid!, slot: vm.slot, field };
    };
    const { pid, slot, field } = qemuStatus(p, "qemu");
    const id = field("Uid")![0]!;
    expect(Number(id) - qemuUidBase({})).toBeGreaterThanOrEqual(0);
    expect(Number(id) - qemuUidBase({})).toBeLessThan(QEMU_UID_COUNT);
    expect(field("Uid")).toEqual([id, id, id, id]);
    expect(field("Gid")).toEqual([id, id, id, id]);
    expect(field("Groups")).toEqual([id]);
    for (const caps of ["CapInh", "CapPrm", "CapEff", "CapAmb"]) expect(field(caps), caps).toEqual(["0000000000000000"]);
    expect(field("NoNewPrivs")).toEqual(["1"]);
    expect(field("Seccomp")).toEqual(["2"]);
    expect(readdirSync(`/proc/${pid}/root`)).toEqual([]);
    expect(statSync(`/proc/${pid}/root`).mode & 0o7777).toBe(0o555);
    expect(p.read("managed/qemu/logs/supervisor.log")).toContain(`QEMU confined: seccomp, uid/gid ${id}, empty chroot`);

    // A worker of another III_HOME has the same network slot; its QEMU must not share the uid (it could kill or
    // prlimit this one), so the uid is leased host-wide.
    const other = project();
    await started(other, "qemu2", ["--", "sleep", "100000"]);
    const second = qemuStatus(other, "qemu2");
    expect(second.slot).toBe(slot);
    expect(second.field("Uid")![0]).not.toBe(id);

    // and the VM works as before: exec, then a clean stop, which gives the uid back
    const exec = await p.cli(["exec", "qemu", "--", "echo", "still-works"]);
    expect(exec.stdout, exec.stderr).toContain("still-works");
    expect(existsSync(join(HOST_LEASE_DIR, id))).toBe(true);
    const stop = await p.cli(["stop", "qemu"]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    expect(existsSync(join(HOST_LEASE_DIR, id))).toBe(false);
    expect((await other.cli(["stop", "qemu2"])).code).toBe(0);
  }, 180_000);

  it("two projects with a worker of the same name start, list and stop independently", async () => {
    const a = project();
    const b = new Project({ III_HOME: a.home });
    projects.push(b);
    await started(a, "same", ["--", "bash", "-c", "echo from-a; sleep 100000"]);
    const addB = await b.cli(["add", `dir:${rootfs}`, "--name", "same", "--", "bash", "-c", "echo from-b; sleep 100000"]);
    expect(addB.code, addB.stderr).toBe(0);
    expect(JSON.parse((await b.cli(["list", "--json"])).stdout)[0]).toMatchObject({ name: "same", status: "stopped" });
    const startB = await b.cli(["start", "same"]);
    expect(startB.code, startB.stderr + b.diagnostics("same")).toBe(0);
    // b shares a's III_HOME: its worker's files are in a's home, under b's project key.
    await waitFor(() => a.read("managed/same/logs/stdout.log", b.dir).includes("from-b"), 30_000, "b's workload");
    expect(a.managed("same", b.dir)).not.toBe(a.managed("same"));
    expect(a.read("managed/same/logs/stdout.log")).toBe("from-a\n");
    expect((await a.cli(["stop", "same", "--timeout", "1"])).code).toBe(0);
    expect(JSON.parse((await a.cli(["list", "--json"])).stdout)[0]).toMatchObject({ status: "stopped" });
    expect(JSON.parse((await b.cli(["list", "--json"])).stdout)[0]).toMatchObject({ status: "running" });
    expect((await b.cli(["exec", "same", "--", "true"])).code).toBe(0);
    expect((await b.cli(["stop", "same", "--timeout", "1"])).code).toBe(0);
  }, 240_000);

  for (const victim of ["virtiofsd:rootfs", "iii-fs", "qemu"] as const) {
    it(`kill -9 of ${victim}: within 2 s list says crashed naming it, a pending exec fails with the reason, nothing is left, start works again`, async () => {
      const p = project();
      const name = `k-${victim.replace(/[^a-z]/g, "")}`;
      await started(p, name, ["--", "sleep", "100000"]);
      const vm = JSON.parse(p.read(`managed/${name}/vm.json`)) as { pid: number; children: { name: string; pid: number }[] };
      const target = vm.children.find((c) => c.name === victim);
      expect(target, JSON.stringify(vm.children)).toBeDefined();
      let pendingOut = "";
      const pending = spawn(process.execPath, [WORKER_CLI, "exec", name, "--", "sleep", "1000"], { cwd: p.dir, env: { ...process.env, ...p.env }, stdio: ["ignore", "pipe", "pipe"] });
      pending.stderr!.on("data", (d) => (pendingOut += d));
      const pendingExit = new Promise<number | null>((resolve) => pending.on("exit", (code) => resolve(code)));
      await new Promise((r) => setTimeout(r, 1_500));
      const killedAt = Date.now();
      process.kill(target!.pid, "SIGKILL");
      await waitFor(async () => JSON.parse((await p.cli(["list", "--json"])).stdout)[0].status === "crashed", 2_000, `list to say crashed after kill -9 of ${victim}`);
      const listed = JSON.parse((await p.cli(["list", "--json"])).stdout)[0] as { lastExit: { reason: string } };
      const named = victim === "qemu" ? /QEMU/ : victim === "iii-fs" ? /FUSE server/ : /virtiofsd/;
      expect(listed.lastExit.reason).toMatch(named);
      expect((await p.cli(["list"])).stdout).toMatch(new RegExp(`${name}\\s+\\S+\\s+crashed`));
      const code = await Promise.race([pendingExit, new Promise<"hung">((r) => setTimeout(() => r("hung"), 5_000))]);
      expect(code).not.toBe("hung");
      expect(code).not.toBe(0);
      expect(pendingOut).toMatch(named);
      console.log(`[isolation] kill -9 ${victim}: crashed within ${Date.now() - killedAt} ms (incl. the pending exec)`);
      await waitFor(() => processesMentioning(p.managed(name)).length === 0 && !existsSync(`/proc/${vm.pid}`), 15_000, "everything of the run to end");
      expect(mountsUnder(p.managed(name))).toEqual([]);
      const again = await p.cli(["start", name]);
      expect(again.code, again.stderr + p.diagnostics(name)).toBe(0);
      expect((await p.cli(["exec", name, "--", "true"])).code).toBe(0);
      expect((await p.cli(["stop", name, "--timeout", "1"])).code).toBe(0);
    }, 240_000);
  }
});
