import { spawn } from "node:child_process";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { SupervisorClient } from "../../src/api/client.js";
import { WORKER_CLI } from "../helpers.js";
import { busyboxRootfs, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping logs -f / attach liveness VM tests: ${skip}`);

/** A unix-socket proxy that can freeze: it stops forwarding in both directions (a client that vanished). */
function freezableProxy(target: string, path: string): Promise<{ server: net.Server; freeze: () => void }> {
  let frozen = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    client.on("data", (d) => !frozen && upstream.write(d));
    upstream.on("data", (d) => !frozen && client.write(d));
    for (const s of [client, upstream]) s.on("error", () => {});
  });
  return new Promise((resolve) => server.listen(path, () => resolve({ server, freeze: () => (frozen = true) })));
}

describe.skipIf(!!skip)("logs -f, UTF-8 attach and attach liveness in a real VM (vm)", () => {
  const p = new Project();
  let api: string;

  beforeAll(async () => {
    const rootfs = busyboxRootfs();
    const tick = "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.3; done";
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "lg", "--", "sh", "-c", tick])).code).toBe(0);
    const start = await p.cli(["start", "lg"]);
    expect(start.code, start.stderr).toBe(0);
    api = join(p.managed("lg"), "api.sock");
  }, 120_000);
  afterAll(() => p.dispose());

  it("logs -f shows lines written after it started and keeps following through stop + start", async () => {
    let out = "";
    const follower = spawn(process.execPath, [WORKER_CLI, "logs", "lg", "-f", "--stdout", "--tail", "0"], { cwd: p.dir, env: { ...process.env, ...p.env } });
    follower.stdout.on("data", (d) => (out += d));
    try {
      await waitFor(() => /tick-\d+/.test(out), 20_000, "a new line while following");
      expect((await p.cli(["stop", "lg", "--timeout", "1"])).code).toBe(0);
      const before = out.length;
      const start = await p.cli(["start", "lg"]);
      expect(start.code, start.stderr).toBe(0);
      // the restarted workload counts from 1 again: its lines reach the same follower
      await waitFor(() => out.slice(before).includes("tick-2\n"), 30_000, "the restarted worker's lines");
    } finally {
      follower.kill("SIGINT");
    }
  }, 120_000);

  it("?encoding=utf8 decodes characters split across output chunks", async () => {
    const client = new SupervisorClient(api);
    const { id } = await client.createExec({ argv: ["sh", "-c", "printf '\\342\\202'; sleep 0.5; printf '\\254 \\360\\237\\230'; sleep 0.5; printf '\\200\\n'"] });
    const ws = new WebSocket(`ws+unix://${api}:/exec/${id}/attach?encoding=utf8`);
    let text = "";
    const messages: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.on("message", (data: Buffer) => {
        const m = JSON.parse(data.toString("utf8")) as { type: string; data?: string };
        if (m.type === "stdout") {
          messages.push(m.data!);
          text += m.data;
        }
      });
      ws.on("close", () => resolve());
      ws.on("error", reject);
    });
    expect(text).toBe("€ 😀\n");
    expect(messages.length).toBeGreaterThanOrEqual(2);
    for (const m of messages) expect(m).not.toContain("\uFFFD");
  }, 60_000);

  it("a client that stops answering pings is dropped within 3 intervals; its exec is killed or kept per onDisconnect", async () => {
    const proxyPath = join(p.dir, "freeze.sock");
    for (const mode of ["kill", "keep"] as const) {
      const proxy = await freezableProxy(api, `${proxyPath}.${mode}`);
      try {
        const client = new SupervisorClient(`${proxyPath}.${mode}`);
        const direct = new SupervisorClient(api);
        const { id } = await direct.createExec({ argv: ["sleep", "30"], onDisconnect: mode, pingIntervalMs: 300 });
        const ws = client.attachSocket(id);
        await new Promise((resolve) => ws.once("open", resolve));
        const frozenAt = Date.now();
        proxy.freeze();
        if (mode === "kill") {
          await waitFor(async () => !(await direct.execInfo(id)).running, 5_000, "the exec to be killed");
          expect(Date.now() - frozenAt).toBeLessThan(300 * 4 + 2_000);
          expect((await direct.execInfo(id)).exit).toMatchObject({ signal: "SIGKILL" });
        } else {
          await new Promise((r) => setTimeout(r, 300 * 5));
          expect((await direct.execInfo(id)).running).toBe(true);
          await direct.signal(id, "SIGKILL");
        }
        ws.terminate();
      } finally {
        proxy.server.close();
      }
    }
  }, 60_000);
});
