// Manual smoke test of dist/init.krun in a real microVM (not part of `pnpm test`;
// the VM integration owns the real VM tests). Boots the libkrunfw kernel under
// QEMU microvm (TCG) with a busybox-static rootfs (no libc) served by virtiofsd,
// /init.krun in it, the contract in /.iii/env.json and the control channel on a
// virtserialport; checks READY, an exec, init's VmRSS, a tty exec and SHUTDOWN,
// and prints timings. (koffi, a devDependency, reads the kernel out of libkrunfw.)
//
//   LIBKRUNFW=/path/libkrunfw.so.5 node scripts/vm-smoke.mjs
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { HostControl, encodeEnvFile } from "../dist/index.js";

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(pkgDir, "package.json"));
const koffi = require("koffi");
const libPath =
  process.env.LIBKRUNFW ??
  spawnSync("sh", ["-c", "ls /work/main/node_modules/.pnpm/*/node_modules/@superradcompany/*/lib/libkrunfw.so.* | head -1"], { encoding: "utf8" }).stdout.trim();
const dir = mkdtempSync(join(tmpdir(), `iii-init-vm-${process.pid}-`));
const children = [];
const cleanup = () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
};
process.on("exit", () => { if (!process.env.VM_KEEP) cleanup(); });

// Kernel: flat image from libkrunfw wrapped into a PVH ELF (DESIGN §4).
const lib = koffi.load(libPath);
const getKernel = lib.func("void *krunfw_get_kernel(_Out_ uint64_t *load, _Out_ uint64_t *entry, _Out_ size_t *size)");
const load = [0n], entry = [0n], size = [0];
const ptr = getKernel(load, entry, size);
const kernel = Buffer.from(koffi.view(ptr, Number(size[0])));

// The kernel carries its own XEN_ELFNOTE_PHYS32_ENTRY note: the PVH entry is that value, not e_entry.
let pvhEntry = BigInt(load[0]);
for (let i = 12; i + 8 <= kernel.length; i += 4) {
  if (kernel[i] === 0x58 && kernel[i + 1] === 0x65 && kernel[i + 2] === 0x6e && kernel[i + 3] === 0 &&
      kernel.readUInt32LE(i - 12) === 4 && kernel.readUInt32LE(i - 4) === 18 && kernel.readUInt32LE(i - 8) === 4) {
    pvhEntry = BigInt(kernel.readUInt32LE(i + 4));
    break;
  }
}
const header = Buffer.alloc(0x1000);
header.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]);
header.writeUInt16LE(2, 16); header.writeUInt16LE(62, 18); header.writeUInt32LE(1, 20);
header.writeBigUInt64LE(pvhEntry, 24); header.writeBigUInt64LE(64n, 32);
header.writeUInt16LE(64, 52); header.writeUInt16LE(56, 54); header.writeUInt16LE(2, 56);
const ph = (at, type, flags, offset, addr, sz, align) => {
  header.writeUInt32LE(type, at); header.writeUInt32LE(flags, at + 4); header.writeBigUInt64LE(offset, at + 8);
  header.writeBigUInt64LE(addr, at + 16); header.writeBigUInt64LE(addr, at + 24);
  header.writeBigUInt64LE(sz, at + 32); header.writeBigUInt64LE(sz, at + 40); header.writeBigUInt64LE(align, at + 48);
};
const noteOff = 64 + 2 * 56;
ph(64, 4, 4, BigInt(noteOff), 0n, 20n, 4n);
ph(120, 1, 7, 0x1000n, BigInt(load[0]), BigInt(size[0]), 0x1000n);
header.writeUInt32LE(4, noteOff); header.writeUInt32LE(4, noteOff + 4); header.writeUInt32LE(18, noteOff + 8);
header.set([0x58, 0x65, 0x6e, 0], noteOff + 12); header.writeUInt32LE(Number(pvhEntry), noteOff + 16);
writeFileSync(join(dir, "kernel.elf"), Buffer.concat([header, kernel]));

// Rootfs: busybox only, plus the init and the contract file.
const root = join(dir, "root");
for (const d of ["bin", "etc", "proc", "sys", "dev", "tmp", "run", "app"]) mkdirSync(join(root, d), { recursive: true });
copyFileSync("/usr/bin/busybox", join(root, "bin/busybox"));
for (const a of spawnSync("/usr/bin/busybox", ["--list"], { encoding: "utf8" }).stdout.split("\n").filter((x) => x && x !== "busybox")) {
  symlinkSync("busybox", join(root, "bin", a));
}
writeFileSync(join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n");
writeFileSync(join(root, "etc/group"), "root:x:0:\napp:x:1000:\n");
copyFileSync(join(pkgDir, "dist/init.krun"), join(root, "init.krun"));
chmodSync(join(root, "init.krun"), 0o755);
mkdirSync(join(root, ".iii"));
writeFileSync(
  join(root, ".iii/env.json"),
  encodeEnvFile({
    cmd: ["/bin/sh", "-c", "echo workload up as $(id -u) in $(pwd); exec sleep 1000"],
    user: "app",
    workdir: "/app",
    hostname: "smoke",
    memoryBytes: 128 * 1024 * 1024,
    pidsMax: 256,
    cpus: 0.5,
    mounts: [{ tag: "share0", path: "/data", readOnly: true }],
    env: { GREETING: "hello world" },
  }),
);

const data = join(dir, "data");
mkdirSync(data);
writeFileSync(join(data, "hello"), "from the host\n");
const khz = (() => {
  try {
    return Number(readFileSync("/sys/devices/system/cpu/cpu0/tsc_freq_khz", "utf8").trim());
  } catch {
    const mhz = readFileSync("/proc/cpuinfo", "utf8").match(/cpu MHz\s*:\s*([\d.]+)/);
    return mhz ? Math.round(Number(mhz[1]) * 1000) : 0;
  }
})();
const cmdline = [
  `console=hvc0 root=rootfs rootfstype=virtiofs rw init=/init.krun reboot=t panic=-1 ${process.env.VM_DEBUG ? "" : "quiet"}`,
  khz ? `tsc_early_khz=${khz} tsc=reliable noapictimer` : "",
  "III_INIT_ENV_FILE=/.iii/env.json",
].join(" ");

/** One boot: fresh virtiofsd daemons (they serve one connection), QEMU, the control connection. */
async function boot(name) {
  const vfsSock = join(dir, `${name}-vfs.sock`);
  const dataSock = join(dir, `${name}-data.sock`);
  const ctlSock = join(dir, `${name}-ctl.sock`);
  const consolePath = join(dir, `${name}-console.log`);
  const server = createServer();
  await new Promise((r) => server.listen(ctlSock, r));
  const connected = new Promise((r) => server.once("connection", r));
  children.push(spawn("/usr/lib/qemu/virtiofsd", [`--socket-path=${vfsSock}`, "-o", `source=${root}`, "-o", "cache=auto"], { stdio: "ignore" }));
  children.push(spawn("/usr/lib/qemu/virtiofsd", [`--socket-path=${dataSock}`, "-o", `source=${data}`, "-o", "cache=auto"], { stdio: "ignore" }));
  for (const sock of [vfsSock, dataSock]) {
    for (let i = 0; i < 100 && spawnSync("test", ["-S", sock]).status !== 0; i++) await new Promise((r) => setTimeout(r, 20));
  }
  const t0 = performance.now();
  const qemu = spawn(
    "qemu-system-x86_64",
    [
      "-M", "microvm,acpi=off,x-option-roms=off,memory-backend=mem", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "512M",
      "-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      "-global", "virtio-mmio.force-legacy=false", "-kernel", join(dir, "kernel.elf"), "-append", cmdline,
      "-chardev", `socket,id=fs0,path=${vfsSock}`, "-device", "vhost-user-fs-device,chardev=fs0,tag=rootfs",
      "-chardev", `socket,id=fs1,path=${dataSock}`, "-device", "vhost-user-fs-device,chardev=fs1,tag=share0",
      "-device", "virtio-serial-device", "-chardev", `file,id=console,path=${consolePath}`, "-device", "virtconsole,chardev=console",
      "-chardev", `socket,id=control,path=${ctlSock},server=off`, "-device", "virtserialport,chardev=control,name=iii.control",
    ],
    { stdio: "inherit" },
  );
  children.push(qemu);
  const qemuExit = new Promise((r) => qemu.on("exit", r));
  const host = HostControl.attach(await connected);
  server.close();
  const ready = await host.ready.catch(async (err) => {
    await qemuExit;
    console.error(`vm-smoke: ${err.message}; console:\n${readFileSync(consolePath, "utf8")}`);
    process.exit(1);
  });
  return { host, ready, qemuExit, consolePath, t0 };
}

const timeout = setTimeout(() => {
  console.error("vm-smoke: timed out");
  process.exit(1);
}, 150_000);
const { host, ready, qemuExit, consolePath, t0 } = await boot("main");
console.log(`READY after ${(performance.now() - t0).toFixed(0)} ms from QEMU start; init bootMs ${ready.bootMs}`);
for (const t of ready.timings) console.log(`  ${t.step.padEnd(16)} ${String(t.ms).padStart(7)} ms ${t.status}${t.detail ? ` (${t.detail})` : ""}`);
let wout = "";
host.workloadStdout.on("data", (d) => (wout += d));
const collect = async (s) => Buffer.concat(await s.toArray()).toString();
const e = host.exec({
  argv: ["sh", "-c", "echo $GREETING; hostname; cd /sys/fs/cgroup/worker && cat memory.max pids.max cpu.max workload/pids.max; id -u; grep ' /data ' /proc/mounts; cat /data/hello; touch /data/x 2>&1 | sed 's/.*: //'; grep ^0:: /proc/self/cgroup /proc/1/cgroup; cat /proc/1/oom_score_adj /proc/self/oom_score_adj; grep ^VmRSS: /proc/1/status"],
});
e.stdin.end();
const [out, st] = await Promise.all([collect(e.stdout), e.exit]);
console.log(`exec → ${JSON.stringify(out)} ${JSON.stringify(st)}`);
const failures = [];
const check = (what, ok) => ok || failures.push(what);
// worker: memory.max, pids.max = pidsMax + 64 (exec reserve), cpu.max; the workload's leaf: pids.max = pidsMax.
check(
  "exec output",
  out ===
    "hello world\nsmoke\n134217728\n320\n50000 100000\n256\n1000\nshare0 /data virtiofs ro,relatime 0 0\nfrom the host\nRead-only file system\n" +
      "/proc/self/cgroup:0::/worker/exec-1\n/proc/1/cgroup:0::/init\n-1000\n500\n" +
      /VmRSS:\s+\d+ kB\n$/.exec(out)?.[0],
);
const rssKiB = Number(/VmRSS:\s+(\d+) kB/.exec(out)?.[1]);
console.log(`init VmRSS in the guest: ${rssKiB} kB`);
check("init VmRSS ≤ 5 MB", rssKiB > 0 && rssKiB <= 5 * 1024);
check("exec status", st.code === 0);
const tty = host.exec({ argv: ["sh", "-c", "stty size; tty; grep ^0:: /proc/self/cgroup"], tty: true, rows: 20, cols: 70 });
const [tout, tst] = await Promise.all([collect(tty.stdout), tty.exit]);
console.log(`tty exec → ${JSON.stringify(tout)} ${JSON.stringify(tst)}`);
check("tty exec", tst.code === 0 && tout.startsWith("20 70\r\n/dev/pts/") && tout.includes("0::/worker/exec-2\r\n"));
const t1 = performance.now();
host.shutdown(2000);
const exit = await host.workloadExit;
await qemuExit;
console.log(`workload said ${JSON.stringify(wout)}; WORKLOAD_EXIT ${JSON.stringify(exit)}; QEMU gone ${(performance.now() - t1).toFixed(0)} ms after SHUTDOWN`);
console.log("console tail:\n" + readFileSync(consolePath, "utf8").split("\n").slice(-4).join("\n"));
check("workload output", wout === "workload up as 1000 in /app\n");
check("workload exit", exit.code === 143 && exit.requested && !exit.escalated);
check("console last line", readFileSync(consolePath, "utf8").includes("iii-init: workload exited with signal SIGTERM; status 143"));

// Second boot: cgroup2 memory.max OOM-kills a 256 MiB allocation under a 64 MiB limit, and init says so.
writeFileSync(
  join(root, ".iii/env.json"),
  encodeEnvFile({ cmd: ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"], memoryBytes: 64 * 1024 * 1024 }),
);
const oom = await boot("oom");
const oomExit = await oom.host.workloadExit;
await oom.qemuExit;
console.log(`OOM boot: WORKLOAD_EXIT ${JSON.stringify(oomExit)}`);
check("oom exit", oomExit.code === 137 && oomExit.oomKilled === true);
check("oom console line", readFileSync(oom.consolePath, "utf8").includes("(OOM-killed); status 137"));
clearTimeout(timeout);
if (failures.length > 0) {
  console.error(`vm-smoke: FAILED: ${failures.join(", ")}`);
  process.exit(1);
}
console.log("vm-smoke: ok");
process.exit(0);
