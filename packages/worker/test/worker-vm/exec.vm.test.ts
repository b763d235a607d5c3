import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SupervisorClient } from "../../src/api/client.js";
import { busyboxRootfs, Project, vmSkipReason, waitFor } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping exec VM tests: ${skip}`);

async function run(client: SupervisorClient, argv: string[], extra: Record<string, unknown> = {}) {
  let stdout = "";
  let stderr = "";
  const exit = await client.exec({ argv, ...extra }, { stdout: (d) => (stdout += d), stderr: (d) => (stderr += d) });
  return { exit, stdout, stderr };
}

/**
 * A unix-socket proxy in front of api.sock that cuts every attach connection once, right after the first
 * chunk that follows the WebSocket upgrade: the client must re-attach and lose nothing.
 */
function cuttingProxy(target: string, path: string): Promise<{ server: net.Server; cuts: () => number }> {
  let cuts = 0;
  const cutOnce = new Set<string>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    let head = "";
    let attachId: string | undefined;
    let upgraded = false;
    client.on("data", (d) => {
      if (!attachId && head.length < 4096) {
        head += d.toString("latin1");
        attachId = /GET \/exec\/([^/]+)\/attach/.exec(head)?.[1];
      }
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      client.write(d);
      if (!attachId || cutOnce.has(attachId)) return;
      if (!upgraded) {
        upgraded = d.toString("latin1").includes("101 Switching Protocols");
        if (!upgraded) return;
        if (d.toString("latin1").indexOf("\r\n\r\n") + 4 >= d.length) return; // nothing after the headers yet
      }
      cutOnce.add(attachId);
      cuts += 1;
      client.destroy();
      upstream.destroy();
    });
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(path, () => resolve({ server, cuts: () => cuts })));
}

describe.skipIf(!!skip)("exec and attach in a real VM (vm)", () => {
  const p = new Project();
  let client: SupervisorClient;

  beforeAll(async () => {
    const rootfs = busyboxRootfs();
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "ex", "--", "sh", "-c", "echo up; while :; do sleep 1; done"])).code).toBe(0);
    const start = await p.cli(["start", "ex"]);
    expect(start.code, start.stderr).toBe(0);
    client = new SupervisorClient(join(p.managed("ex"), "api.sock"));
  }, 180_000);
  afterAll(() => p.dispose());

  it("iii worker exec prints both streams, exits with the command's code, honours -e -w -u", async () => {
    const r = await p.cli(["exec", "ex", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    expect(r).toMatchObject({ code: 3, stdout: "out\n", stderr: "err\n" });
    const env = await p.cli(["exec", "ex", "-e", "GREETING=hi there", "-w", "/tmp", "-u", "1000:1000", "--", "sh", "-c", 'echo "$GREETING|$(pwd)|$(id -u):$(id -g)"']);
    expect(env.code, env.stderr).toBe(0);
    expect(env.stdout).toBe("hi there|/tmp|1000:1000\n");
  }, 60_000);

  it("a tty exec reports the size it was given and follows resizes", async () => {
    let out = "";
    let sendLine: (() => void) | undefined;
    let resize: ((rows: number, cols: number) => void) | undefined;
    let resized = false;
    const exit = await client.exec(
      { argv: ["sh", "-c", "stty size; read line; stty size"], tty: true, rows: 40, cols: 100 },
      {
        // Resize only once the first size was printed, then let the command go on.
        stdout: (d) => {
          out += d;
          if (!resized && out.includes("40 100") && resize) {
            resized = true;
            resize(50, 132);
            setTimeout(() => sendLine?.(), 300);
          }
        },
        stderr: () => {},
        stdin: (sink) => (sendLine = () => sink.send(Buffer.from("\n"))),
        onAttach: (c) => (resize = c.resize),
      },
    );
    expect(exit.code).toBe(0);
    expect(out.replace(/\r/g, "").trim().split("\n").filter((l) => /^\d+ \d+$/.test(l))).toEqual(["40 100", "50 132"]);
  }, 60_000);

  it("8 concurrent execs × 50 commands each: every output complete and correct", async () => {
    const worker = async (w: number) => {
      for (let i = 0; i < 50; i++) {
        const r = await run(client, ["sh", "-c", `echo w${w}-c${i}; echo e${w}-c${i} >&2; exit ${i % 7}`]);
        expect(r.stdout).toBe(`w${w}-c${i}\n`);
        expect(r.stderr).toBe(`e${w}-c${i}\n`);
        expect(r.exit.code).toBe(i % 7);
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
  }, 600_000);

  it("with the attach cut before the exit frame, re-attach delivers 50/50 complete outputs", async () => {
    const proxy = await cuttingProxy(join(p.managed("ex"), "api.sock"), join(p.dir, "cut.sock"));
    try {
      const viaProxy = new SupervisorClient(join(p.dir, "cut.sock"));
      let complete = 0;
      for (let i = 0; i < 50; i++) {
        const r = await run(viaProxy, ["sh", "-c", `echo first-${i}; sleep 0.2; echo second-${i}; exit 5`], { onDisconnect: "keep" });
        if (r.stdout === `first-${i}\nsecond-${i}\n` && r.exit.code === 5) complete += 1;
      }
      expect(complete).toBe(50);
      expect(proxy.cuts()).toBe(50);
    } finally {
      proxy.server.close();
    }
  }, 600_000);

  it("refuses disallowed signals (400), operations on finished execs (409), and execs beyond the limit (429)", async () => {
    const { id } = await client.createExec({ argv: ["sleep", "30"] });
    await expect(client.signal(id, "SIGSEGV")).rejects.toMatchObject({ status: 400 });
    await expect(client.resize(id, 0, 10)).rejects.toMatchObject({ status: 400 });
    await client.signal(id, "SIGTERM");
    await waitFor(async () => !(await client.execInfo(id)).running, 10_000, "the exec to end");
    expect((await client.execInfo(id)).exit).toMatchObject({ code: 143, signal: "SIGTERM" });
    await expect(client.signal(id, "SIGTERM")).rejects.toMatchObject({ status: 409 });
    const ids: string[] = [];
    let refused: unknown;
    for (let i = 0; i < 40 && !refused; i++) {
      try {
        ids.push((await client.createExec({ argv: ["sleep", "30"] })).id);
      } catch (error) {
        refused = error;
      }
    }
    expect(refused).toMatchObject({ code: "ExecRejected", message: expect.stringContaining("HTTP 429") });
    for (const x of ids) await client.signal(x, "SIGKILL").catch(() => {});
    for (const x of ids) await waitFor(async () => !(await client.execInfo(x)).running, 10_000, `exec ${x} to end`);
  }, 120_000);

  it("a 1 s timeout ends a long command as timed out", async () => {
    const t = Date.now();
    const r = await p.cli(["exec", "ex", "--timeout", "1", "--", "sleep", "10"]);
    expect(Date.now() - t).toBeLessThan(5_000);
    expect(r.code).toBe(143);
    expect(r.stderr).toContain("timed out");
  }, 60_000);
});
