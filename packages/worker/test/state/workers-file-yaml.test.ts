import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeWorkersFile, wasmInapplicableFields, WrittenNumber, type WorkerSpec } from "../../src/state/model.js";
import { loadWorkersFile, updateWorkersFile } from "../../src/state/workers-file.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-state-yaml-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(text: string): string {
  const path = join(mkdtempSync(join(dir, "p-")), "iii.workers.yaml");
  writeFileSync(path, text);
  return path;
}

describe("lossy numbers (review5-s18 #3)", () => {
  it("through an alias and under %YAML 1.1 (0755 is octal 493 there) they are refused where text is expected", async () => {
    await expect(loadWorkersFile(file("x-v: &v 1.10\nworkers:\n  a:\n    image: i\n    env: {V: *v}\n"))).rejects.toThrow(/workers\.a\.env\.V: 1\.10 reads as the number 1\.1; quote it/);
    await expect(loadWorkersFile(file("%YAML 1.1\n---\nworkers:\n  a:\n    image: i\n    command: [chmod, 0755, /x]\n"))).rejects.toThrow(/workers\.a\.command\[1\]: 0755 reads as the number 493/);
    await expect(loadWorkersFile(file("workers:\n  0755: {image: i}\n"))).rejects.toThrow(/workers: the key 0755 reads as the number 755/);
    // the user's own keys are theirs: not read, not refused
    expect(Object.keys((await loadWorkersFile(file("x-ids: {0755: a}\nother: {0x1F: b}\nworkers:\n  a: {image: i, x-n: {1.10: c}}\n"))).workers)).toEqual(["a"]);
    await expect(loadWorkersFile(file("workers:\n  a: {image: i, env: {N: .inf}}\n"))).rejects.toThrow(/workers\.a\.env\.N: \.inf reads as the number Infinity/);
  });

  it("the decoder takes a WrittenNumber's value where a number belongs", () => {
    const file = decodeWorkersFile({
      workers: {
        a: { image: "i", resources: { cpus: new WrittenNumber("0.50", 0.5), pids: new WrittenNumber("0x100", 256) }, network: { hostPorts: [new WrittenNumber("05432", 5432)] } },
        w: { image: "wasm:/m.wasm", wasm: { maxExecutionMs: new WrittenNumber("1e3", 1000) } },
      },
    });
    expect(file.workers.a!.resources).toEqual({ cpus: "0.5", pids: 256 });
    expect(file.workers.a!.network.hostPorts).toEqual([5432]);
    expect(file.workers.w!.wasm).toEqual({ maxExecutionMs: 1000 });
  });
});

describe("rewrites keep what they did not touch (#4, #5)", () => {
  it("numbers in the untouched entry keep their text; a new entry's strings are quoted where they must be", async () => {
    const path = file("\uFEFFworkers:\r\n  a:\r\n    image: i\r\n    resources: {cpus: +1.50, pids: 0x4A}\r\n    network: {hostPorts: [1e3]}\r\n");
    await updateWorkersFile(path, (f) => {
      f.workers.b = { ...f.workers.a!, image: "j", env: { V: "1.10", O: "0755" }, command: ["chmod", "0755"] } as WorkerSpec;
    });
    const text = readFileSync(path, "utf8");
    expect(text.startsWith("\uFEFFworkers:\r\n  a:\r\n    image: i\r\n    resources: {cpus: +1.50, pids: 0x4A}\r\n    network: {hostPorts: [1e3]}\r\n  b:\r\n")).toBe(true);
    expect((await loadWorkersFile(path)).workers.b).toMatchObject({ env: { V: "1.10", O: "0755" }, command: ["chmod", "0755"] });
  });
});

describe("wasm: workers (#7): one rule for add and the decoder", () => {
  it("lists every VM-only field with a value, none of what encodeWorkersFile writes empty", () => {
    const spec: WorkerSpec = { image: "wasm:/m.wasm", env: {}, resources: { memory: "32Mi" }, ports: [], mounts: [], network: { allow: [], deny: [], hostPorts: [] } };
    expect(wasmInapplicableFields(spec)).toEqual([]);
    expect(
      wasmInapplicableFields({
        ...spec,
        ports: [{ host: 1, guest: 1, protocol: "tcp" }],
        resources: { cpus: "1", pids: 8, disk: "1Gi" },
        network: { mode: "public", allow: ["a"], deny: ["b"], hostPorts: [1] },
        capabilities: { add: [], drop: ["CHOWN"] },
      }),
    ).toEqual(["ports", "resources.cpus", "resources.pids", "resources.disk", "network.mode", "network.allow", "network.deny", "network.hostPorts", "capabilities"]);
    expect(() => decodeWorkersFile({ workers: { w: { image: "wasm:/m.wasm", capabilities: { add: [] }, network: { allow: [] } } } })).not.toThrow();
    expect(() => decodeWorkersFile({ workers: { w: { image: "wasm:/m.wasm", network: { deny: ["10.0.0.0/8"] } } } })).toThrow(/workers\.w\.network\.deny: applies only to a VM worker/);
  });
});
