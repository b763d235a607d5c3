import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { debianRootfs, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping worker network VM tests: ${skip}`);

function httpServer(body: string): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer((_, res) => res.end(body));
    server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

/** dnsmasq on a loopback address with one test record: the upstream the VM's DNS interceptor asks. */
async function startDnsmasq(dir: string): Promise<{ proc: ChildProcess; upstream: string }> {
  const address = `127.0.0.${50 + (process.pid % 150)}`;
  const port = 20_000 + (process.pid % 20_000);
  const proc = spawn("dnsmasq", [
    "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces", `--listen-address=${address}`, `--port=${port}`,
    "--host-record=svc.test.iii,198.51.100.7", `--pid-file=${join(dir, "dnsmasq.pid")}`, "--log-facility=-",
  ], { stdio: "ignore" });
  await new Promise((r) => setTimeout(r, 300));
  return { proc, upstream: `${address}:${port}` };
}

describe.skipIf(!!skip)("worker networking in a real VM (vm)", () => {
  let rootfs: string;
  let dir: string;
  let dns: { proc: ChildProcess; upstream: string };
  const servers: Server[] = [];
  const projects: Project[] = [];

  beforeAll(async () => {
    rootfs = debianRootfs();
    dir = mkdtempSync(join(tmpdir(), "iii-vmnet-"));
    dns = await startDnsmasq(dir);
  }, 600_000);
  afterAll(async () => {
    for (const p of projects) await p.dispose();
    for (const s of servers) s.close();
    dns?.proc.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reaches the engine port, not other host ports; resolves through the interceptor; knows host.iii.internal", async () => {
    const engine = await httpServer("engine-ok");
    const other = await httpServer("other-ok");
    servers.push(engine.server, other.server);
    const p = new Project({ III_DNS_UPSTREAM: dns.upstream });
    projects.push(p);
    const script = [
      `echo "engine=$(curl -s -m 10 http://localhost:${engine.port}/)"`,
      `echo "engine-by-name=$(curl -s -m 10 http://host.iii.internal:${engine.port}/)"`,
      `curl -s -m 10 http://host.iii.internal:${other.port}/ >/dev/null; echo "other-rc=$?"`,
      "echo \"gw=$(getent hosts host.iii.internal | cut -d' ' -f1)\"",
      "echo \"svc=$(getent hosts svc.test.iii | cut -d' ' -f1)\"",
      `echo "url=$III_URL"`,
    ].join("; ");
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "net", "--", "sh", "-c", script])).code).toBe(0);
    const start = await p.cli(["start", "net", "--engine-url", `ws://localhost:${engine.port}`]);
    expect(start.code, start.stderr + p.diagnostics("net")).toBe(0);
    await waitFor(() => p.read("managed/net/logs/stdout.log").includes("url="), 60_000, "the workload's report");
    const out = p.read("managed/net/logs/stdout.log");
    const gateway = /gw=(\S+)/.exec(out)?.[1];
    expect(gateway).toMatch(/^100\.(9[6-9]|1[01]\d|12[0-7])\.\d+\.\d+$/);
    expect(out).toContain("engine=engine-ok");
    expect(out).toContain("engine-by-name=engine-ok");
    expect(out).toContain("other-rc=7"); // curl: failed to connect (RST), not a timeout (28)
    expect(out).toContain("svc=198.51.100.7");
    expect(out).toContain(`url=ws://${gateway}:${engine.port}`);
    expect(p.read("managed/net/logs/supervisor.log")).toMatch(/denied|deny/i);
  }, 180_000);

  it("three workers at once each reach only the host ports their own policy allows", async () => {
    const targets = await Promise.all([httpServer("a"), httpServer("b"), httpServer("c")]);
    servers.push(...targets.map((t) => t.server));
    const p = new Project({ III_DNS_UPSTREAM: dns.upstream });
    projects.push(p);
    const probe = targets.map((t, i) => `curl -s -m 10 http://host.iii.internal:${t.port}/ >/dev/null; echo "t${i}=$?"`).join("; ");
    const names = ["wa", "wb", "wc"];
    for (const [i, name] of names.entries()) {
      const add = await p.cli(["add", `dir:${rootfs}`, "--name", name, "--host-port", String(targets[i]!.port), "--", "sh", "-c", `${probe}; echo done`]);
      expect(add.code, add.stderr).toBe(0);
    }
    const starts = await Promise.all(names.map((name) => p.cli(["start", name, "--engine-url", "ws://engine.invalid:1"])));
    starts.forEach((s, i) => expect(s.code, s.stderr + p.diagnostics(names[i]!)).toBe(0));
    for (const [i, name] of names.entries()) {
      await waitFor(() => p.read(`managed/${name}/logs/stdout.log`).includes("done"), 90_000, `${name}'s probes`);
      const out = p.read(`managed/${name}/logs/stdout.log`);
      // On a failure, the supervisor's log says which way each connection went (denied, refused, timed out).
      for (let j = 0; j < 3; j++) expect(out, `${name}${p.diagnostics(name)}`).toContain(`t${j}=${i === j ? 0 : 7}`);
    }
  }, 300_000);
});
