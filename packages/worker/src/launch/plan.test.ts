import { realpathSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { workerPaths } from "../paths.js";
import { iiiCodePaths } from "./share-safety.js";
import { emptyNetwork, type WorkerSpec } from "../state/model.js";
import { buildVmCommands, TCG_TB_SIZE_MIB } from "../vmm/qemu-argv.js";
import { guestAddresses, planVm, type PlanContext } from "./plan.js";
import type { LaunchRequest } from "./request.js";

const env = { III_HOME: "/h" };
const paths = workerPaths("web", env, "/proj");
const spec: WorkerSpec = {
  image: "dir:/images/app",
  env: { API: "http://localhost:3000" },
  resources: { cpus: "2", memory: "256Mi" },
  ports: [{ host: 8080, guest: 80, protocol: "tcp" }],
  mounts: [
    { host: "/data", guest: "/data", readOnly: false },
    { host: "/etc/ssl", guest: "/ssl", readOnly: true },
  ],
  network: emptyNetwork(),
  command: ["node", "server.js"],
};
const request = (over: Partial<LaunchRequest> = {}): LaunchRequest => ({
  name: "web",
  cwd: "/proj",
  spec,
  rootfs: "/images/app",
  engineUrl: "ws://localhost:49134",
  fresh: false,
  stopGraceMs: 10_000,
  bootTimeoutMs: 120_000,
  host: {
    qemuPath: "/usr/bin/qemu-system-x86_64",
    virtiofsdPath: "/usr/libexec/virtiofsd",
    accel: { accel: "tcg", reason: "test" },
    kernelPath: "/k/kernel.elf",
    guestInit: { init: "/i/init.krun" },
  },
  ...over,
});
const context: PlanContext = { slot: 5, paths };

/** The value after each occurrence of `flag` in argv. */
const values = (argv: string[], flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));

describe("planVm: a worker spec → QEMU's argv, with no VM", () => {
  it("maps resources, shares, network and the guest contract onto the command lines", () => {
    const plan = planVm(request(), context);
    const { argv, daemons } = buildVmCommands(plan.vm, { accel: "tcg", virtiofsdPath: "/usr/libexec/virtiofsd", tscKhz: 2_000_000 });
    expect(values(argv, "-smp")).toEqual(["2"]);
    expect(values(argv, "-m")).toEqual(["256M"]);
    expect(values(argv, "-accel")).toEqual([`tcg,tb-size=${TCG_TB_SIZE_MIB}`]);
    expect(values(argv, "-kernel")).toEqual(["/k/kernel.elf"]);
    const append = values(argv, "-append")[0]!;
    expect(append).toContain("init=/init.krun");
    expect(append).toContain("III_INIT_ENV_FILE=/.iii/env.json");
    expect(values(argv, "-device").filter((d) => d.startsWith("vhost-user-fs-device"))).toEqual([
      "vhost-user-fs-device,chardev=fs0,tag=rootfs",
      "vhost-user-fs-device,chardev=fs1,tag=iii-m0",
      "vhost-user-fs-device,chardev=fs2,tag=iii-m1",
    ]);
    expect(argv.join(" ")).toContain(paths.netSock);
    expect(argv.join(" ")).toContain("mac=02:6d:73:00:05:02");
    // The root and the writable share reach virtiofsd through FUSE views; the read-only share as itself.
    expect(daemons.map((d) => d.share.hostDir)).toEqual([paths.mnt, `${paths.dir}/shares/0`, "/etc/ssl"]);
    expect(daemons.map((d) => d.command.join(" ")).join("\n")).toContain("/usr/libexec/virtiofsd");
    expect(plan.vm).toMatchObject({ qemuPath: "/usr/bin/qemu-system-x86_64", virtiofsdPath: "/usr/libexec/virtiofsd", accelChoice: { accel: "tcg" } });
  });

  it("gives the guest its slot's addresses from @iii/network, and rewrites loopback URLs to the gateway", () => {
    expect(guestAddresses(5)).toEqual({ gateway: "100.96.0.21", guest: "100.96.0.22", guestMac: "02:6d:73:00:05:02" });
    expect(guestAddresses(0x1234).guestMac).toBe("02:6d:73:12:34:02");
    const plan = planVm(request(), context);
    expect(plan.guest.network).toEqual({ ip: "100.96.0.22", gateway: "100.96.0.21", prefixLength: 30, dns: ["100.96.0.21"], mtu: 1500 });
    expect(plan.guest).toMatchObject({ cmd: ["node", "server.js"], hostname: "web", mounts: [{ tag: "iii-m0", path: "/data", readOnly: false }, { tag: "iii-m1", path: "/ssl", readOnly: true }] });
    expect(plan.guest.env).toMatchObject({ API: "http://100.96.0.21:3000", III_URL: "ws://100.96.0.21:49134" });
    expect(plan.network).toMatchObject({ slot: 5, ports: [{ hostPort: 8080, guestPort: 80 }], policy: { mode: "public", hostPorts: [49134] } });
    expect(plan.network.pcapPath).toBeUndefined();
    expect(planVm(request({ capturePath: "/tmp/x.pcap" }), { ...context, dnsUpstreams: ["127.0.0.1:53"] }).network).toMatchObject({ pcapPath: "/tmp/x.pcap", dns: { upstreams: ["127.0.0.1:53"] } });
  });

  it("serves the guest init and its contract as virtual files of the root's FUSE view", () => {
    const plan = planVm(request({ fresh: true, host: { ...request().host, guestInit: { init: "/i/init.krun" } } }), context);
    expect(plan.mount.fresh).toBe(true);
    expect(plan.mount.root).toMatchObject({ layers: { lower: "/images/app", upper: paths.upper }, mountpoint: paths.mnt, allowOther: true });
    // An idle worker's FUSE server sleeps: no stats timer, the unmount check every 5 s.
    expect(plan.mount.root).toMatchObject({ statsPushMs: 0, watchIntervalMs: 5000 });
    const files = plan.mount.root.virtualFiles!;
    expect(files["/init.krun"]).toEqual({ hostPath: "/i/init.krun" });
    // The init is one static ELF: nothing else is injected but the contract.
    expect(Object.keys(files).sort()).toEqual(["/.iii/env.json", "/init.krun"]);
    expect(JSON.parse((files["/.iii/env.json"] as { content: string }).content)).toBeTypeOf("object");
    expect(plan.mount.shares).toEqual([
      expect.objectContaining({ guest: "/data", readOnly: false, mount: expect.objectContaining({ root: "/data", mountpoint: `${paths.dir}/shares/0` }) }),
      { guest: "/ssl", host: "/etc/ssl", readOnly: true },
    ]);
  });

  it("names the workload's capabilities in the guest contract only when the worker changes Docker's default set", () => {
    const contract = (plan: ReturnType<typeof planVm>): Record<string, string> =>
      JSON.parse((plan.mount.root.virtualFiles!["/.iii/env.json"] as { content: string }).content) as Record<string, string>;
    expect(contract(planVm(request(), context)).III_WORKER_CAPS).toBeUndefined();
    const spec = request().spec;
    const withCaps = planVm(request({ spec: { ...spec, capabilities: { add: ["NET_ADMIN"], drop: ["NET_RAW", "MKNOD"] } } }), context);
    expect(contract(withCaps).III_WORKER_CAPS).toBe("CHOWN,DAC_OVERRIDE,FOWNER,FSETID,KILL,SETGID,SETUID,SETPCAP,NET_BIND_SERVICE,NET_ADMIN,SYS_CHROOT,AUDIT_WRITE,SETFCAP");
  });

  it("gives stable inode numbers to every writable share, the ones the host edits too, never to the root", () => {
    const mounts = [
      { host: "/edited", guest: "/workspace", readOnly: false },
      { host: "/deps", guest: "/workspace/node_modules", readOnly: false, cache: "always" as const },
    ];
    const plan = planVm(request({ spec: { ...spec, mounts } }), context);
    expect(plan.mount.shares.map((s) => [s.guest, s.mount?.stableInodes])).toEqual([
      ["/workspace", true],
      ["/workspace/node_modules", true],
    ]);
    expect(plan.mount.root.stableInodes).toBeUndefined();
  });

  it("bounds the root's writable layer by --disk (default 10Gi), never a writable share", () => {
    const byDefault = planVm(request(), context);
    expect(byDefault.launch.diskBytes).toBe(10 * 2 ** 30);
    expect(byDefault.mount.root.upperLimitBytes).toBe(10 * 2 ** 30);
    const oneGi = planVm(request({ spec: { ...spec, resources: { ...spec.resources, disk: "1Gi" } } }), context);
    expect(oneGi.mount.root.upperLimitBytes).toBe(1_073_741_824);
    expect(oneGi.mount.root.layers).toEqual({ lower: "/images/app", upper: paths.upper });
    // The shares are host directories the user handed over: the bound is the root's only.
    for (const share of [...byDefault.mount.shares, ...oneGi.mount.shares]) expect(share.mount?.upperLimitBytes).toBeUndefined();
    expect(byDefault.mount.shares[0]!.mount).toBeDefined();
  });

  it("takes KVM's defaults when the host chose KVM, and refuses a share that overlaps III_HOME, read-only or not", () => {
    const kvm = planVm(request({ spec: { ...spec, resources: {} }, host: { ...request().host, accel: { accel: "kvm", reason: "test" } } }), context);
    expect(kvm.vm.vcpus).toBe(2);
    expect(values(buildVmCommands(kvm.vm, { accel: "kvm", virtiofsdPath: "/v" }).argv, "-cpu")).toEqual(["host"]);
    const hiding = { ...spec, mounts: [{ host: "/h", guest: "/h", readOnly: false }] };
    const overlaps = expect.objectContaining({ code: "InvalidOption", message: expect.stringMatching(/overlaps III_HOME \(\/h\)/) });
    expect(() => planVm(request({ spec: hiding }), context)).toThrow(overlaps);
    // Read-only too: III_HOME holds registry credentials and every worker's settings.
    expect(() => planVm(request({ spec: { ...hiding, mounts: [{ host: "/h", guest: "/h", readOnly: true }] } }), context)).toThrow(overlaps);
    expect(() => planVm(request({ spec: { ...hiding, mounts: [{ host: "/h/images", guest: "/i", readOnly: true }] } }), context)).toThrow(overlaps);
    expect(planVm(request({ spec: { ...hiding, mounts: [{ host: "/data", guest: "/d", readOnly: true }] } }), context).vm.shares).toEqual([{ tag: "iii-m0", hostDir: "/data", readOnly: true, xattr: false }]);
    // nor may the root filesystem contain it (dir:/); an image's rootfs inside the cache is fine
    expect(() => planVm(request({ rootfs: "/" }), context)).toThrow(expect.objectContaining({ code: "InvalidOption", message: expect.stringMatching(/contains III_HOME/) }));
    expect(planVm(request({ rootfs: "/h/images/sha256/ab/rootfs" }), context).mount.root.layers?.lower).toBe("/h/images/sha256/ab/rootfs");
  });

  it("refuses a writable share that holds code iii runs on the host (its packages, node, QEMU, virtiofsd)", () => {
    const code = iiiCodePaths(["/usr/bin/qemu-system-x86_64"]);
    // this package itself, its dependencies (the supervisor's code, init.krun's package), node
    const self = realpathSync(fileURLToPath(new URL("../..", import.meta.url)));
    expect(code).toContain(self);
    expect(code).toContain(realpathSync(process.execPath));
    expect(code.some((p) => /@iii\/filesystem|packages\/filesystem$/.test(p))).toBe(true);
    const project = dirname(self); // a project with iii installed in it, shared writable
    const writable = { ...spec, mounts: [{ host: project, guest: "/app", readOnly: false }] };
    expect(() => planVm(request({ spec: writable }), context)).toThrow(expect.objectContaining({ code: "InvalidOption", message: expect.stringMatching(/writable: it holds .*, code iii runs on the host/) }));
    expect(() => planVm(request({ spec: { ...spec, mounts: [{ host: "/usr", guest: "/usr2", readOnly: false }] } }), context)).toThrow(expect.objectContaining({ message: expect.stringMatching(/code iii runs on the host/) }));
    expect(planVm(request({ spec: { ...writable, mounts: [{ host: project, guest: "/app", readOnly: true }] } }), context).mount.shares).toHaveLength(1);
  });
});
