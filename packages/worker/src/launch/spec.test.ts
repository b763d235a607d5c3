import { describe, expect, it } from "vitest";
import { emptyNetwork, type WorkerSpec } from "../state/model.js";
import { buildLaunchSpec, reservedEnvKeys, reservedEnvMessage, rewriteLoopbackUrls } from "./spec.js";

const base: WorkerSpec = { image: "dir:/r", env: {}, resources: {}, ports: [], mounts: [], network: emptyNetwork() };

describe("launch spec", () => {
  it("rewrites loopback URLs to the gateway and nothing else", () => {
    expect(rewriteLoopbackUrls("ws://localhost:49134", "100.96.0.1")).toBe("ws://100.96.0.1:49134");
    expect(rewriteLoopbackUrls("http://127.0.0.1/x and https://[::1]:8443/y", "10.0.0.1")).toBe("http://10.0.0.1/x and https://10.0.0.1:8443/y");
    expect(rewriteLoopbackUrls("http://localhost.example.com/ localhost:80", "g")).toBe("http://localhost.example.com/ localhost:80");
  });

  it("merges image config under the worker's spec and allows the engine port", () => {
    const launch = buildLaunchSpec({
      name: "w",
      spec: { ...base, env: { A: "worker", URL: "http://localhost:3000" }, resources: { cpus: "500m", memory: "256Mi" }, command: ["node", "--url", "ws://localhost:49134"] },
      rootfs: "/r",
      image: { entrypoint: ["/bin/app"], cmd: ["x"], env: { A: "image", B: "image" }, workingDir: "/app", user: "1000:1000" },
      engineUrl: "ws://localhost:49134",
      gateway: "100.96.0.1",
    });
    expect(launch.argv).toEqual(["node", "--url", "ws://100.96.0.1:49134"]);
    expect(launch.env).toMatchObject({ A: "worker", B: "image", URL: "http://100.96.0.1:3000", III_URL: "ws://100.96.0.1:49134", III_ENGINE_URL: "ws://100.96.0.1:49134" });
    expect(launch).toMatchObject({ workdir: "/app", user: "1000:1000", vcpus: 1, memoryBytes: 256 * 2 ** 20 });
    expect(launch.network.hostPorts).toEqual([49134]);
  });

  it("uses Entrypoint+Cmd when the worker has no command, and refuses an image with neither", () => {
    const launch = buildLaunchSpec({ name: "w", spec: base, rootfs: "/r", image: { entrypoint: ["/e"], cmd: ["a", "b"] }, engineUrl: "ws://engine.example:1", gateway: "g" });
    expect(launch.argv).toEqual(["/e", "a", "b"]);
    expect(launch.network.hostPorts).toEqual([]);
    expect(() => buildLaunchSpec({ name: "w", spec: base, rootfs: "/r", engineUrl: "ws://x:1", gateway: "g" })).toThrow(/has no command/);
  });
});

describe("the sandbox's own environment", () => {
  it("sets III_ISOLATION=microvm and III_WORKER_NAME last, over the image's and a hand-edited spec's env", () => {
    const launch = buildLaunchSpec({
      name: "resize",
      spec: { ...base, command: ["true"], env: { III_ISOLATION: "none", III_WORKER_NAME: "other" } },
      rootfs: "/r",
      image: { env: { III_ISOLATION: "image" } },
      engineUrl: "ws://x:1",
      gateway: "g",
    });
    expect(launch.env).toMatchObject({ III_ISOLATION: "microvm", III_WORKER_NAME: "resize" });
  });

  it("names the reserved keys it finds", () => {
    expect(reservedEnvKeys({ A: "1", III_ISOLATION: "x" })).toEqual(["III_ISOLATION"]);
    expect(reservedEnvKeys(["III_WORKER_NAME", "III_URL"])).toEqual(["III_WORKER_NAME"]);
    expect(reservedEnvMessage(["III_ISOLATION"])).toMatch(/^III_ISOLATION is set by iii for every worker .* cannot be overridden$/);
  });
});

describe("default vCPUs", () => {
  it("is 1 under TCG and 2 with KVM when the worker names none", () => {
    const input = { name: "w", spec: { ...base, command: ["true"] }, rootfs: "/r", engineUrl: "ws://x:1", gateway: "g" };
    expect(buildLaunchSpec({ ...input, accel: "tcg" }).vcpus).toBe(1);
    expect(buildLaunchSpec({ ...input, accel: "kvm" }).vcpus).toBe(2);
    expect(buildLaunchSpec({ ...input, accel: "tcg", spec: { ...input.spec, resources: { cpus: "3" } } }).vcpus).toBe(3);
  });
});
