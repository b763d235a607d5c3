import { describe, expect, it } from "vitest";
import { encodeGuestEnv } from "@iii/init";
import { decodeWorkersFile, encodeWorkersFile, parseCapabilityNames, parseNetworkMode, parsePids } from "./model.js";
import { buildLaunchSpec, DEFAULT_DISK_BYTES, DEFAULT_PIDS_MAX } from "../launch/spec.js";

describe("isolation fields of a worker spec", () => {
  it("--pids takes a whole number in range, and says what was wrong otherwise", () => {
    expect(parsePids("64")).toBe(64);
    for (const bad of ["0", "7", "1.5", "-3", "lots", "4194305"]) expect(() => parsePids(bad)).toThrow(/invalid pids/);
  });

  it("--network takes public or none", () => {
    expect(parseNetworkMode("none")).toBe("none");
    expect(() => parseNetworkMode("private")).toThrow(/expected public or none/);
  });

  it("mode and pids survive the state file; absent stays absent", () => {
    const file = decodeWorkersFile({
      workers: {
        locked: { image: "dir:/r", resources: { cpus: "500m", pids: 64 }, network: { mode: "none", allow: ["example.org:443"] } },
        open: { image: "dir:/r" },
      },
    });
    expect(file.workers.locked!.network.mode).toBe("none");
    expect(file.workers.locked!.resources.pids).toBe(64);
    expect(file.workers.open!.network.mode).toBeUndefined();
    const encoded = encodeWorkersFile(file) as { workers: Record<string, { resources: Record<string, unknown>; network: Record<string, unknown> }> };
    expect(encoded.workers.locked!.network.mode).toBe("none");
    expect(encoded.workers.locked!.resources.pids).toBe(64);
    expect("mode" in encoded.workers.open!.network).toBe(false);
    expect(decodeWorkersFile(encoded)).toEqual(file);
  });

  it("disk survives the state file as given, in a stable place among the resources; absent stays absent", () => {
    const file = decodeWorkersFile({
      workers: {
        bounded: { image: "dir:/r", resources: { pids: 64, disk: "512Mi", memory: "1Gi", cpus: "2" } },
        open: { image: "dir:/r", resources: { memory: "1Gi" } },
      },
    });
    expect(file.workers.bounded!.resources.disk).toBe("512Mi");
    expect(file.workers.open!.resources.disk).toBeUndefined();
    const encoded = encodeWorkersFile(file) as { workers: Record<string, { resources: Record<string, unknown> }> };
    expect(Object.keys(encoded.workers.bounded!.resources)).toEqual(["cpus", "memory", "disk", "pids"]);
    expect(encoded.workers.bounded!.resources.disk).toBe("512Mi");
    expect("disk" in encoded.workers.open!.resources).toBe(false);
    expect(decodeWorkersFile(encoded)).toEqual(file);
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", resources: { disk: "10" } } } })).toThrow(/workers\.w\.resources\.disk: invalid disk "10": must be at least 64Mi/);
  });

  it("--disk becomes the launch's diskBytes; without it, 10Gi", () => {
    const input = { name: "w", rootfs: "/r", engineUrl: "ws://localhost:49134", gateway: "100.96.0.1", image: { cmd: ["true"] } };
    const spec = { image: "dir:/r", env: {}, resources: {}, ports: [], mounts: [], network: { allow: [], deny: [], hostPorts: [] } };
    expect(DEFAULT_DISK_BYTES).toBe(10 * 2 ** 30);
    expect(buildLaunchSpec({ ...input, spec }).diskBytes).toBe(DEFAULT_DISK_BYTES);
    expect(buildLaunchSpec({ ...input, spec: { ...spec, resources: { disk: "1Gi" } } }).diskBytes).toBe(1_073_741_824);
  });

  it("a bad mode or pids in the state file names the field", () => {
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", network: { mode: "all" } } } })).toThrow(/workers\.w\.network\.mode/);
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", resources: { pids: 2 } } } })).toThrow(/workers\.w\.resources\.pids/);
  });

  it("a fractional --cpus is a quota over ceil(cpus) vCPUs; pids default to DEFAULT_PIDS_MAX", () => {
    const input = { name: "w", rootfs: "/r", engineUrl: "ws://localhost:49134", gateway: "100.96.0.1", image: { cmd: ["true"] } };
    const spec = { image: "dir:/r", env: {}, resources: { cpus: "500m" }, ports: [], mounts: [], network: { allow: [], deny: [], hostPorts: [] } };
    expect(buildLaunchSpec({ ...input, spec })).toMatchObject({ vcpus: 1, cpuLimit: 0.5, pidsMax: DEFAULT_PIDS_MAX, network: { mode: "public" } });
    const fast = buildLaunchSpec({ ...input, spec: { ...spec, resources: { cpus: "2500m", pids: 64 }, network: { mode: "none" as const, allow: [], deny: [], hostPorts: [] } } });
    expect(fast).toMatchObject({ vcpus: 3, cpuLimit: 2.5, pidsMax: 64, network: { mode: "none" } });
    expect(buildLaunchSpec({ ...input, spec: { ...spec, resources: {} } }).cpuLimit).toBeUndefined();
  });
});

describe("workload capabilities in a worker spec", () => {
  const input = { name: "w", rootfs: "/r", engineUrl: "ws://localhost:49134", gateway: "100.96.0.1", image: { cmd: ["true"] } };
  const base = { image: "dir:/r", env: {}, resources: {}, ports: [], mounts: [], network: { allow: [], deny: [], hostPorts: [] } };

  it("--cap-add / --cap-drop take names with or without CAP_, in any case, or ALL; anything else is one clear error", () => {
    expect(parseCapabilityNames(["net_admin", "CAP_SYS_TIME", "NET_ADMIN", "all"], "--cap-add")).toEqual(["NET_ADMIN", "SYS_TIME", "ALL"]);
    expect(() => parseCapabilityNames(["SYS_EVERYTHING"], "--cap-add")).toThrow(expect.objectContaining({ code: "InvalidOption", message: 'invalid --cap-add "SYS_EVERYTHING": not a Linux capability (e.g. NET_ADMIN, SYS_TIME, or ALL)' }));
  });

  it("survive the state file; absent or empty stays absent", () => {
    const file = decodeWorkersFile({
      workers: {
        net: { image: "dir:/r", capabilities: { add: ["NET_ADMIN"], drop: ["net_raw"] } },
        plain: { image: "dir:/r" },
      },
    });
    expect(file.workers.net!.capabilities).toEqual({ add: ["NET_ADMIN"], drop: ["NET_RAW"] });
    expect(file.workers.plain!.capabilities).toBeUndefined();
    const encoded = encodeWorkersFile(file) as { workers: Record<string, Record<string, unknown>> };
    expect(encoded.workers.net!.capabilities).toEqual({ add: ["NET_ADMIN"], drop: ["NET_RAW"] });
    expect("capabilities" in encoded.workers.plain!).toBe(false);
    expect(decodeWorkersFile(encoded)).toEqual(file);
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", capabilities: { add: ["GOD_MODE"] } } } })).toThrow(/workers\.w\.capabilities\.add: invalid capability "GOD_MODE"/);
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", capabilities: { keep: ["CHOWN"] } } } })).toThrow(/workers\.w\.capabilities\.keep: unknown field/);
  });

  it("the launch carries the resolved set only when the worker changes the default; the guest contract then names it", () => {
    expect(buildLaunchSpec({ ...input, spec: base }).capabilities).toBeUndefined();
    const added = buildLaunchSpec({ ...input, spec: { ...base, capabilities: { add: ["SYS_TIME"], drop: ["ALL"] } } });
    expect(added.capabilities).toEqual(["SYS_TIME"]);
    expect(encodeGuestEnv({ cmd: ["true"], ...(added.capabilities ? { capabilities: added.capabilities } : {}) }).III_WORKER_CAPS).toBe("SYS_TIME");
    const dropped = buildLaunchSpec({ ...input, spec: { ...base, capabilities: { add: [], drop: ["ALL"] } } });
    expect(encodeGuestEnv({ cmd: ["true"], capabilities: dropped.capabilities! }).III_WORKER_CAPS).toBe("none");
  });
});

describe("add's capabilities line", () => {
  it("names what was added and dropped, and says when the workload can lift its in-guest limits", async () => {
    const { capabilitiesSummary } = await import("../workers.js");
    expect(capabilitiesSummary({ add: ["SYS_TIME"], drop: ["NET_RAW"] })).toBe("workload capabilities: Docker's default set +SYS_TIME -NET_RAW (inside its VM only: they reach the guest kernel, not the host)");
    expect(capabilitiesSummary({ add: [], drop: ["NET_RAW"] })).toBe("workload capabilities: Docker's default set -NET_RAW");
    expect(capabilitiesSummary({ add: ["CHOWN"], drop: [] })).toBe("workload capabilities: Docker's default set (unchanged)");
    expect(capabilitiesSummary({ add: ["ALL"], drop: [] })).toMatch(/with DAC_READ_SEARCH, SYS_MODULE, SYS_RAWIO, SYS_PTRACE, SYS_ADMIN the workload can lift its in-guest limits/);
  });
});

describe("bounds a hand-edited iii.workers.yaml meets too", () => {
  it("cpus over 255 and memory over 4Pi name the field at load, not at every start", () => {
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", resources: { cpus: "1000" } } } })).toThrow(/workers\.w\.resources\.cpus: invalid cpus "1000": a worker's VM has at most 255 vCPUs/);
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", resources: { memory: "99999999Ti" } } } })).toThrow(/workers\.w\.resources\.memory: invalid memory "99999999Ti": must be at most 4Pi/);
  });

  it("--capture into a directory that does not exist is refused before anything starts", async () => {
    const { capturePathFor } = await import("../lifecycle.js");
    expect(() => capturePathFor("no-such-dir/x.pcap", "/tmp")).toThrow(expect.objectContaining({ code: "InvalidOption", message: "invalid --capture no-such-dir/x.pcap: cannot write /tmp/no-such-dir/x.pcap: directory /tmp/no-such-dir does not exist" }));
    expect(capturePathFor("x.pcap", "/tmp")).toBe("/tmp/x.pcap");
  });
});

describe("unknown keys in a worker entry", () => {
  it("are refused with the field's path (a typo must not quietly run with the defaults); x- keys are the user's", () => {
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", netwrok: { mode: "none" } } } })).toThrow(/workers\.w\.netwrok: unknown field/);
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", resources: { memroy: "1Gi" } } } })).toThrow(/workers\.w\.resources\.memroy: unknown field/);
    expect(() => decodeWorkersFile({ workers: { w: { image: "dir:/r", network: { mode: "none", alow: ["example.org"] } } } })).toThrow(/workers\.w\.network\.alow: unknown field/);
    const file = decodeWorkersFile({ workers: { w: { image: "dir:/r", "x-owner": "team-a", resources: { "x-note": "sized for the nightly job", memory: "1Gi" } } } });
    expect(file.workers.w!.resources.memory).toBe("1Gi");
  });
});
