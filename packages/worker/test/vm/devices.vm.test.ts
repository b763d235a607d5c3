import { mkdirSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { QemuVmm } from "../../src/vmm/index.js";
import { processCpuShare } from "../helpers.js";
import { INIT_PRELUDE, INIT_REBOOT, VmTestResources, rootfsWithInit, vmTestEnv, type VmTestEnv } from "./harness.js";

const env = await vmTestEnv();
if ("skip" in env) console.warn(`SKIP VM device tests: ${env.skip}`);

/** A one-connection unix socket server that collects what it receives. */
function listen(path: string): Promise<{ server: Server; connection: Promise<Socket>; received: () => Buffer }> {
  const chunks: Buffer[] = [];
  let accept!: (s: Socket) => void;
  const connection = new Promise<Socket>((r) => (accept = r));
  const server = createServer((socket) => {
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", () => undefined);
    accept(socket);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve({ server, connection, received: () => Buffer.concat(chunks) }));
  });
}

describe.skipIf("skip" in env)("QemuVmm devices (TCG)", () => {
  const { kernelPath, busyboxRootfs } = env as VmTestEnv;
  const res = new VmTestResources();
  const servers: Server[] = [];
  afterAll(async () => {
    await res.release();
    for (const s of servers) s.close();
  });

  it("iii.control appears in the guest, carries bytes both ways; shares are mounted rw and ro", async () => {
    const dir = res.dir("ctl");
    const rw = join(dir, "rw");
    const ro = join(dir, "ro");
    mkdirSync(rw);
    mkdirSync(ro);
    writeFileSync(join(ro, "hello.txt"), "from-the-host\n");
    const root = rootfsWithInit(
      busyboxRootfs,
      dir,
      `${INIT_PRELUDE}
for p in /sys/class/virtio-ports/*; do echo "port $(basename $p) name=$(cat $p/name)"; [ "$(cat $p/name)" = iii.control ] && dev=/dev/$(basename $p); done
mkdir -p /mnt/rw /mnt/ro
mount -t virtiofs rw /mnt/rw && echo guest-wrote > /mnt/rw/out.txt && echo "rw-ok"
mount -t virtiofs ro /mnt/ro && echo "ro-read=$(cat /mnt/ro/hello.txt)"
if echo x > /mnt/ro/new.txt 2>/dev/null; then echo "ro-write=allowed"; else echo "ro-write=refused"; fi
exec 3<>$dev
echo "hello-from-guest" >&3
read -r line <&3
echo "echo:$line" >&3
echo "control-done dev=$dev"
${INIT_REBOOT}`,
    );
    const controlPath = join(dir, "control.sock");
    const control = await listen(controlPath);
    servers.push(control.server);
    const vm = res.track(
      new QemuVmm({
        name: "ctl",
        kernelPath,
        root: { tag: "rootfs", hostDir: root },
        shares: [
          { tag: "rw", hostDir: rw },
          { tag: "ro", hostDir: ro, readOnly: true },
        ],
        vcpus: 1,
        memoryBytes: 128 * 1024 * 1024,
        consoleLogPath: join(dir, "console.log"),
        runDir: join(dir, "run"),
        control: { socketPath: controlPath },
        accel: "tcg",
      }),
    );
    await vm.start();
    expect(vm.processes().filter((p) => p.role === "virtiofsd")).toHaveLength(3);
    // QEMU is the client: it connected during its start-up, before the guest could write.
    const socket = await control.connection;
    const deadline = Date.now() + 60_000;
    while (!control.received().includes("hello-from-guest\n") && Date.now() < deadline && !vm.exit) await new Promise((r) => setTimeout(r, 20));
    expect(control.received().toString()).toContain("hello-from-guest\n");
    socket.write("ping-from-host\n");
    await vm.waitForConsole(/control-done/, 60_000);
    const exit = await vm.wait();
    expect(exit.reason).toBe("guest-reset");
    expect(control.received().toString()).toBe("hello-from-guest\necho:ping-from-host\n");
    const consoleText = readFileSync(join(dir, "console.log"), "utf8");
    expect(consoleText).toMatch(/port vport\d+p\d+ name=iii\.control/);
    expect(consoleText).toContain("rw-ok");
    expect(consoleText).toContain("ro-read=from-the-host");
    expect(consoleText).toContain("ro-write=refused");
    expect(readFileSync(join(rw, "out.txt"), "utf8")).toBe("guest-wrote\n");
    expect(existsSync(join(ro, "new.txt"))).toBe(false);
  }, 120_000);

  it("-netdev stream: guest frames arrive length-prefixed on the host socket, and replies reach the guest", async () => {
    const dir = res.dir("net");
    const mac = "52:54:00:12:34:56";
    const root = rootfsWithInit(
      busyboxRootfs,
      dir,
      `${INIT_PRELUDE}
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
echo "mac=$(cat /sys/class/net/eth0/address)"
arping -c 2 -w 20 -I eth0 10.0.2.2
echo "net-done"
${INIT_REBOOT}`,
    );
    const netPath = join(dir, "net.sock");
    const frames: Buffer[] = [];
    let pending = Buffer.alloc(0);
    const gatewayMac = Buffer.from([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);
    const server = createServer((socket) => {
      socket.on("error", () => undefined);
      socket.on("data", (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 4) {
          const length = pending.readUInt32BE(0);
          if (pending.length < 4 + length) break;
          const frame = pending.subarray(4, 4 + length);
          pending = pending.subarray(4 + length);
          frames.push(Buffer.from(frame));
          // Answer ARP requests for 10.0.2.2 so the guest's arping sees a reply over the same framing.
          if (frame.readUInt16BE(12) === 0x0806 && frame.readUInt16BE(20) === 1 && frame.subarray(38, 42).equals(Buffer.from([10, 0, 2, 2]))) {
            const reply = Buffer.alloc(42);
            frame.copy(reply, 0, 6, 12); // to the requester
            gatewayMac.copy(reply, 6);
            reply.writeUInt16BE(0x0806, 12);
            reply.writeUInt16BE(1, 14);
            reply.writeUInt16BE(0x0800, 16);
            reply[18] = 6;
            reply[19] = 4;
            reply.writeUInt16BE(2, 20);
            gatewayMac.copy(reply, 22);
            reply.set([10, 0, 2, 2], 28);
            frame.copy(reply, 32, 22, 32); // target = the requester's MAC + IP
            const header = Buffer.alloc(4);
            header.writeUInt32BE(reply.length);
            socket.write(Buffer.concat([header, reply]));
          }
        }
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(netPath, r));
    const vm = res.track(
      new QemuVmm({
        name: "net",
        kernelPath,
        root: { tag: "rootfs", hostDir: root },
        vcpus: 1,
        memoryBytes: 128 * 1024 * 1024,
        consoleLogPath: join(dir, "console.log"),
        runDir: join(dir, "run"),
        network: { socketPath: netPath, mac },
        accel: "tcg",
      }),
    );
    await vm.start();
    await vm.waitForConsole(/net-done/, 90_000);
    await vm.wait();
    const consoleText = readFileSync(join(dir, "console.log"), "utf8");
    expect(consoleText).toContain(`mac=${mac}`);
    const arp = frames.filter((f) => f.readUInt16BE(12) === 0x0806);
    expect(arp.length).toBeGreaterThan(0);
    for (const f of arp) {
      expect(f.subarray(6, 12).toString("hex")).toBe(mac.replaceAll(":", ""));
      expect(f.length).toBeGreaterThanOrEqual(42);
    }
    expect(consoleText).toMatch(/reply from 10\.0\.2\.2 \[52:55:0a:00:02:02\]/i);
  }, 150_000);

  it("a CPU quota holds on the host against a guest that owns its whole VM: QEMU stays at 0.3 CPU; without it, a full CPU", async () => {
    // The guest here is its own init (no iii init, no guest cgroup): what a guest that escaped every limit inside
    // the VM can do, burn its vCPU. Only the host cgroup (cpuQuota) stands between that and a host core.
    const share = async (name: string, cpuQuota?: { cgroupName: string; cpus: number }) => {
      const dir = res.dir(name);
      const root = rootfsWithInit(busyboxRootfs, dir, `${INIT_PRELUDE}\necho burning\nwhile :; do :; done`);
      const vm = res.track(
        new QemuVmm({
          name,
          kernelPath,
          root: { tag: "rootfs", hostDir: root },
          vcpus: 1,
          memoryBytes: 128 * 1024 * 1024,
          consoleLogPath: join(dir, "console.log"),
          runDir: join(dir, "run"),
          accel: "tcg",
          ...(cpuQuota ? { cpuQuota } : {}),
        }),
      );
      await vm.start();
      await vm.waitForConsole(/burning/, 60_000);
      const qemu = vm.processes().find((p) => p.role === "qemu")!;
      // Under a quota QEMU starts paused and runs only once in its group (then `cont`): the guest got here after it.
      expect(qemu.argv.includes("-S")).toBe(cpuQuota !== undefined);
      const pid = qemu.pid;
      const used = await processCpuShare(pid, 3_000);
      await vm.cleanup();
      return used;
    };
    const limited = await share("cpuq", { cgroupName: `test-${process.pid}`, cpus: 0.3 });
    const unlimited = await share("cpuf");
    console.log(`[vm] a guest burning its vCPU: QEMU used ${(limited * 100).toFixed(0)}% of a CPU under a 0.3 quota, ${(unlimited * 100).toFixed(0)}% without`);
    expect(limited).toBeLessThanOrEqual(0.36);
    expect(unlimited).toBeGreaterThan(0.45);
  }, 180_000);
});
