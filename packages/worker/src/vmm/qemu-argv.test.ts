import { describe, expect, it } from "vitest";
import { isIiiError } from "../errors.js";
import { buildKernelCmdline, buildQemuArgv, buildVirtiofsdCommand, MAX_CMDLINE_ENV, TCG_TB_SIZE_MIB } from "./qemu-argv.js";

/** The value following each occurrence of `flag`. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));
}

describe("buildKernelCmdline", () => {
  it("has the measured base words, and tsc_early_khz plus the TCG boot tuning only under TCG", () => {
    expect(buildKernelCmdline({ rootTag: "rootfs", init: "/init.krun", accel: "tcg", tscKhz: 2445428 })).toBe(
      "console=hvc0 root=rootfs rootfstype=virtiofs rw init=/init.krun reboot=t panic=-1 quiet tsc_early_khz=2445428 " +
        "tsc=reliable noapictimer initcall_blacklist=jent_mod_init,svm_init,vmx_init rcupdate.rcu_expedited=1",
    );
    expect(buildKernelCmdline({ rootTag: "rootfs", init: "/init.krun", accel: "tcg", tscKhz: 2445428, tcgTuning: false })).toBe(
      "console=hvc0 root=rootfs rootfstype=virtiofs rw init=/init.krun reboot=t panic=-1 quiet tsc_early_khz=2445428",
    );
    expect(buildKernelCmdline({ rootTag: "r", init: "/sbin/init", accel: "kvm", tscKhz: 2445428 })).toBe(
      "console=hvc0 root=r rootfstype=virtiofs rw init=/sbin/init reboot=t panic=-1 quiet",
    );
  });

  it("appends extra words, then env entries, quoting values with spaces", () => {
    const cmdline = buildKernelCmdline({
      rootTag: "rootfs",
      init: "/init.krun",
      accel: "kvm",
      extra: ["loglevel=7"],
      env: { III_WORKER_CMD: "sh -c 'echo hi'", III_INIT_IP: "10.0.2.2", EMPTY: "" },
    });
    expect(cmdline.endsWith(` loglevel=7 III_WORKER_CMD="sh -c 'echo hi'" III_INIT_IP=10.0.2.2 EMPTY=""`)).toBe(true);
  });

  it("refuses what the kernel command line cannot carry", () => {
    const base = { rootTag: "rootfs", init: "/init.krun", accel: "tcg" as const };
    const cases = [
      { ...base, env: { A: 'has "quotes"' } },
      { ...base, env: { A: "new\nline" } },
      { ...base, env: { "BAD-NAME": "x" } },
      { ...base, extra: ["two words"] },
      { ...base, env: Object.fromEntries(Array.from({ length: MAX_CMDLINE_ENV + 1 }, (_, i) => [`V${i}`, "x"])) },
      { ...base, env: { BIG: "x".repeat(2000) } },
      { ...base, tscKhz: 0 },
    ];
    for (const spec of cases) {
      expect(() => buildKernelCmdline(spec), JSON.stringify(spec).slice(0, 80)).toThrow();
      try {
        buildKernelCmdline(spec);
      } catch (error) {
        expect(isIiiError(error, "InvalidOption")).toBe(true);
      }
    }
  });
});

describe("buildQemuArgv", () => {
  const spec = {
    kernelPath: "/k/ce9a.elf",
    cmdline: "console=hvc0 root=rootfs",
    accel: "tcg" as const,
    vcpus: 2,
    memoryBytes: 512 * 1024 * 1024,
    shares: [
      { tag: "rootfs", socketPath: "/run/vm/fs0.sock" },
      { tag: "data", socketPath: "/run/vm/fs1.sock" },
    ],
    consoleLogPath: "/m/logs/console.log",
    qmpSocketPath: "/run/vm/qmp.sock",
  };

  it("builds the microvm flags of DESIGN §3", () => {
    const argv = buildQemuArgv(spec);
    expect(values(argv, "-M")).toEqual(["microvm,acpi=off,x-option-roms=off,memory-backend=mem"]);
    expect(values(argv, "-accel")).toEqual([`tcg,tb-size=${TCG_TB_SIZE_MIB}`]);
    expect(values(argv, "-cpu")).toEqual(["max"]);
    expect(values(argv, "-smp")).toEqual(["2"]);
    expect(values(argv, "-m")).toEqual(["512M"]);
    expect(values(argv, "-object")).toEqual(["memory-backend-memfd,id=mem,size=512M,share=on"]);
    expect(values(argv, "-global")).toEqual(["virtio-mmio.force-legacy=false"]);
    expect(values(argv, "-kernel")).toEqual(["/k/ce9a.elf"]);
    expect(values(argv, "-append")).toEqual(["console=hvc0 root=rootfs"]);
    for (const flag of ["-nodefaults", "-no-user-config", "-no-reboot"]) expect(argv).toContain(flag);
    expect(values(argv, "-display")).toEqual(["none"]);
  });

  it("a one-vCPU TCG VM may have two (maxcpus=2): QEMU then translates its barriers, which virtiofsd's rings need", () => {
    expect(values(buildQemuArgv({ ...spec, vcpus: 1 }), "-smp")).toEqual(["1,maxcpus=2"]);
    // KVM runs the guest's own barriers; more vCPUs make TCG parallel already.
    expect(values(buildQemuArgv({ ...spec, vcpus: 1, accel: "kvm" }), "-smp")).toEqual(["1"]);
    expect(values(buildQemuArgv({ ...spec, vcpus: 3 }), "-smp")).toEqual(["3"]);
  });

  it("caps TCG's translation cache (QEMU's default is 1 GiB of host RSS to fill); KVM has none", () => {
    expect(values(buildQemuArgv({ ...spec, tcgTbSizeMiB: 32 }), "-accel")).toEqual(["tcg,tb-size=32"]);
    expect(values(buildQemuArgv({ ...spec, accel: "kvm" }), "-accel")).toEqual(["kvm"]);
    for (const bad of [0, -1, 1.5, Number.NaN, 5000]) {
      let error: unknown;
      try {
        buildQemuArgv({ ...spec, tcgTbSizeMiB: bad });
      } catch (e) {
        error = e;
      }
      expect(isIiiError(error) && error.code === "InvalidOption", `tb-size ${bad}`).toBe(true);
    }
  });

  it("wires one vhost-user-fs device per share, the console, QMP, and no control or network unless asked", () => {
    const argv = buildQemuArgv(spec);
    expect(values(argv, "-device")).toEqual([
      "vhost-user-fs-device,chardev=fs0,tag=rootfs",
      "vhost-user-fs-device,chardev=fs1,tag=data",
      "virtio-serial-device",
      "virtconsole,chardev=console",
    ]);
    expect(values(argv, "-chardev")).toEqual([
      "socket,id=fs0,path=/run/vm/fs0.sock",
      "socket,id=fs1,path=/run/vm/fs1.sock",
      "file,id=console,path=/m/logs/console.log",
      "socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off",
    ]);
    expect(values(argv, "-mon")).toEqual(["chardev=qmp,mode=control"]);
    expect(argv).not.toContain("-netdev");
  });

  it("adds the iii.control port (QEMU client by default) and -netdev stream to the network socket", () => {
    const argv = buildQemuArgv({ ...spec, accel: "kvm", control: { socketPath: "/m/control.sock" }, network: { socketPath: "/m/net.sock", mac: "52:54:00:12:34:56" } });
    expect(values(argv, "-cpu")).toEqual(["host"]);
    expect(values(argv, "-chardev")).toContain("socket,id=control,path=/m/control.sock,server=off");
    expect(values(argv, "-device")).toContain("virtserialport,chardev=control,name=iii.control");
    expect(values(argv, "-netdev")).toEqual(["stream,id=n0,server=off,addr.type=unix,addr.path=/m/net.sock"]);
    expect(values(argv, "-device")).toContain("virtio-net-device,netdev=n0,mac=52:54:00:12:34:56");
    const server = buildQemuArgv({ ...spec, control: { socketPath: "/m/control.sock", mode: "server" } });
    expect(values(server, "-chardev")).toContain("socket,id=control,path=/m/control.sock,server=on,wait=off");
  });

  it("escapes commas in paths (QEMU's option syntax) and rounds memory up to MiB", () => {
    const argv = buildQemuArgv({ ...spec, memoryBytes: 300 * 1024 * 1024 + 1, consoleLogPath: "/a,b/console.log" });
    expect(values(argv, "-m")).toEqual(["301M"]);
    expect(values(argv, "-chardev")).toContain("file,id=console,path=/a,,b/console.log");
  });

  it("rejects bad resources and MACs", () => {
    expect(() => buildQemuArgv({ ...spec, vcpus: 0 })).toThrow(/vCPUs/);
    expect(() => buildQemuArgv({ ...spec, vcpus: 1.5 })).toThrow(/vCPUs/);
    expect(() => buildQemuArgv({ ...spec, memoryBytes: 1024 })).toThrow(/memory/);
    expect(() => buildQemuArgv({ ...spec, network: { socketPath: "/n", mac: "zz" } })).toThrow(/MAC/);
    expect(() => buildQemuArgv({ ...spec, shares: [] })).toThrow(/root share/);
  });
});

describe("buildVirtiofsdCommand", () => {
  it("serves a share read-write with the namespace sandbox", () => {
    expect(buildVirtiofsdCommand("/usr/lib/qemu/virtiofsd", { share: { tag: "rootfs", hostDir: "/m/mnt" }, socketPath: "/r/fs0.sock" })).toEqual([
      "/usr/lib/qemu/virtiofsd",
      "--socket-path=/r/fs0.sock",
      "-o", "source=/m/mnt",
      "-o", "cache=auto",
      "-o", "sandbox=namespace",
      "-o", "log_level=warn",
    ]);
  });

  it("serves an inherited listening socket (--fd=3) instead of creating one, everything else alike", () => {
    const spec = { share: { tag: "rootfs", hostDir: "/m/mnt" }, socketPath: "/r/fs0.sock" };
    const byPath = buildVirtiofsdCommand("/v", spec);
    const byFd = buildVirtiofsdCommand("/v", { ...spec, listenFd: 3 });
    expect(byFd[1]).toBe("--fd=3");
    expect(byFd.filter((a) => a.startsWith("--socket-path"))).toEqual([]);
    expect(byFd.slice(2)).toEqual(byPath.slice(2));
  });

  it("serves a read-only share from a read-only bind mount in its own mount namespace", () => {
    const command = buildVirtiofsdCommand("/v", { share: { tag: "data", hostDir: "/host/data", readOnly: true }, socketPath: "/r/fs1.sock", cache: "always" });
    expect(command.slice(0, 5)).toEqual(["unshare", "--mount", "--propagation", "private", "--"]);
    expect(command[7]).toContain("remount,bind,ro");
    expect(command.slice(8)).toEqual(["/host/data", "/v", "--socket-path=/r/fs1.sock", "-o", "source=/host/data", "-o", "cache=always", "-o", "sandbox=namespace", "-o", "log_level=warn"]);
  });

  it("a share's own cache mode and timeout win over the VM-wide default", () => {
    const share = { tag: "rootfs", hostDir: "/m/mnt", cache: "always" as const, timeoutSec: 1 };
    const command = buildVirtiofsdCommand("/v", { share, socketPath: "/r/fs0.sock", cache: "auto" });
    expect(command.slice(4, 8)).toEqual(["-o", "cache=always", "-o", "timeout=1"]);
  });

  it("validates the tag", () => {
    expect(() => buildVirtiofsdCommand("/v", { share: { tag: "x".repeat(37), hostDir: "/d" }, socketPath: "/s" })).toThrow(/36 bytes/);
    expect(() => buildVirtiofsdCommand("/v", { share: { tag: "a b", hostDir: "/d" }, socketPath: "/s" })).toThrow(/tag/);
  });
});

describe("TCG tuning and vCPUs", () => {
  it("keeps the clock words for 1 vCPU only", async () => {
    const { buildKernelCmdline } = await import("./qemu-argv.js");
    const one = buildKernelCmdline({ rootTag: "r", init: "/init.krun", accel: "tcg", vcpus: 1 });
    const two = buildKernelCmdline({ rootTag: "r", init: "/init.krun", accel: "tcg", vcpus: 2 });
    expect(one).toContain("tsc=reliable noapictimer");
    expect(two).not.toContain("tsc=reliable");
    expect(two).not.toContain("noapictimer");
    expect(two).toContain("initcall_blacklist=jent_mod_init,svm_init,vmx_init");
  });

  it("boots a TCG guest with more than one vCPU on its first (init brings the rest online), with or without tuning; KVM and one vCPU as asked", async () => {
    const { buildKernelCmdline } = await import("./qemu-argv.js");
    const words = (spec: { accel: "tcg" | "kvm"; vcpus: number; tcgTuning?: boolean }) => buildKernelCmdline({ rootTag: "r", init: "/init.krun", ...spec }).split(" ");
    expect(words({ accel: "tcg", vcpus: 2 })).toContain("maxcpus=1");
    expect(words({ accel: "tcg", vcpus: 4, tcgTuning: false })).toContain("maxcpus=1");
    expect(words({ accel: "tcg", vcpus: 1 }).some((w) => w.startsWith("maxcpus"))).toBe(false);
    expect(words({ accel: "kvm", vcpus: 2 }).some((w) => w.startsWith("maxcpus"))).toBe(false);
  });
});
