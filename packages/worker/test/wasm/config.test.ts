import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { decodeWorkersFile } from "../../src/state/model.js";
import { buildWasiConfig, encodeWasiConfig, parseWasiConfig, type WasiConfig } from "../../src/wasm/config.js";
import { detectWasmKind } from "../../src/wasm/kind.js";

const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url)), "utf8");
const GOLDEN = fixture("wasi_config.golden.json");

describe("WASI_CONFIG golden file: the controller's builder", () => {
  it("builds exactly the golden document from the iii.workers.yaml entry (every boolean written, fixed key order)", () => {
    const file = decodeWorkersFile(parse(fixture("wasi_config.workers.yaml")));
    const config = buildWasiConfig("greeter", file.workers.greeter!, "ws://localhost:49134");
    expect(encodeWasiConfig(config)).toBe(GOLDEN);
  });
});

describe("WASI_CONFIG golden file: the runner's parser", () => {
  it("reads the golden document into every field", () => {
    const expected: WasiConfig = {
      args: ["greeter", "--greet", "world"],
      env: { GREETING: "hello", III_ISOLATION: "wasm", III_WORKER_NAME: "greeter", LANG: "C.UTF-8" },
      dirs: [
        { hostPath: "/srv/greeter/data", guestPath: "/data", readOnly: true },
        { hostPath: "/srv/greeter/out", guestPath: "/out", readOnly: false },
      ],
      network: { inherit: false, allowIpNameLookup: false, tcpBind: ["127.0.0.1:0"], tcpConnect: ["127.0.0.1:8080"], udpBind: [], udpConnect: [], udpOutgoing: [] },
      limits: { maxMemoryBytes: 67108864, maxExecutionMs: 30000, cpuBudgetMs: 10000 },
      engine: { url: "ws://localhost:49134" },
    };
    expect(parseWasiConfig(GOLDEN)).toStrictEqual(expected);
    // and the round trip is the identity on the golden text
    expect(encodeWasiConfig(parseWasiConfig(GOLDEN))).toBe(GOLDEN);
  });

  const mutate = (edit: (doc: Record<string, any>) => void) => {
    const doc = JSON.parse(GOLDEN);
    edit(doc);
    return JSON.stringify(doc);
  };
  const cases: [string, (doc: Record<string, any>) => void, string][] = [
    ["a dropped false boolean", (d) => delete d.network.inherit, "network.inherit: missing field"],
    ["a dropped readOnly", (d) => delete d.dirs[1].readOnly, "dirs[1].readOnly: missing field"],
    ["a boolean as a string", (d) => (d.network.allowIpNameLookup = "false"), "network.allowIpNameLookup: expected true or false"],
    ["an unknown field", (d) => (d.network.tcpListen = []), "network.tcpListen: unknown field"],
    ["an unknown top-level field", (d) => (d.preopens = {}), "preopens: unknown field"],
    ["env as a list", (d) => (d.env = ["A=B"]), "env: expected a map of strings"],
    ["a number in args", (d) => (d.args[1] = 5), "args[1]: expected a string"],
    ["a relative host path", (d) => (d.dirs[0].hostPath = "data"), "dirs[0].hostPath: expected an absolute path"],
    ["memory not in pages", (d) => (d.limits.maxMemoryBytes = 1000), "limits.maxMemoryBytes: expected a multiple of 65536 (whole pages)"],
    ["a missing limit", (d) => delete d.limits.cpuBudgetMs, "limits.cpuBudgetMs: missing field"],
    ["a negative limit", (d) => (d.limits.maxExecutionMs = -1), "limits.maxExecutionMs: expected a positive whole number or null"],
    ["a missing engine section", (d) => delete d.engine, "engine: missing field"],
    ["an engine URL that is not ws://", (d) => (d.engine.url = "http://localhost:49134"), "engine.url: expected a ws:// or wss:// URL"],
    ["udpOutgoing as a boolean", (d) => (d.network.udpOutgoing = true), "network.udpOutgoing: expected a list of strings"],
  ];
  for (const [what, edit, message] of cases) {
    it(`refuses ${what} with one line naming the field`, () => {
      let error: Error | undefined;
      try {
        parseWasiConfig(mutate(edit));
      } catch (e) {
        error = e as Error;
      }
      expect(error).toMatchObject({ code: "WasiConfigInvalid" });
      expect(error!.message).toBe(`invalid WASI_CONFIG: ${message}`);
      expect(error!.message).not.toContain("\n");
    });
  }

  it("the worker's tier and name are in its env whatever the user gave", () => {
    const file = decodeWorkersFile(parse(fixture("wasi_config.workers.yaml")));
    const spec = file.workers.greeter!;
    const config = buildWasiConfig("greeter", { ...spec, env: { ...spec.env, III_ISOLATION: "none", III_WORKER_NAME: "other" } }, "ws://localhost:49134");
    expect(config.env).toMatchObject({ III_ISOLATION: "wasm", III_WORKER_NAME: "greeter" });
  });

  it("null limits mean no limit", () => {
    const config = parseWasiConfig(mutate((d) => ((d.limits.maxExecutionMs = null), (d.limits.cpuBudgetMs = null))));
    expect(config.limits).toEqual({ maxMemoryBytes: 67108864, maxExecutionMs: null, cpuBudgetMs: null });
  });
});

describe("kind detection from the header's layer field", () => {
  const header = (...bytes: number[]) => new Uint8Array([0x00, 0x61, 0x73, 0x6d, ...bytes]);
  it("a core module is layer 0 version 1; a component is layer 1 whatever its version", () => {
    expect(detectWasmKind(header(0x01, 0x00, 0x00, 0x00))).toBe("module");
    expect(detectWasmKind(header(0x0d, 0x00, 0x01, 0x00))).toBe("component");
    // a future component version 1 is still a component: the layer decides, not a version threshold
    expect(detectWasmKind(header(0x01, 0x00, 0x01, 0x00))).toBe("component");
  });
  it("refuses what is not WebAssembly, an unknown layer and a core version other than 1", () => {
    expect(() => detectWasmKind(new TextEncoder().encode("#!/bin/sh\n"))).toThrow(/not a WebAssembly binary/);
    expect(() => detectWasmKind(header(0x01, 0x00))).toThrow(/not a WebAssembly binary/);
    expect(() => detectWasmKind(header(0x01, 0x00, 0x02, 0x00))).toThrow(/unknown WebAssembly layer 2/);
    expect(() => detectWasmKind(header(0x02, 0x00, 0x00, 0x00))).toThrow(/core module version 2/);
  });
});
