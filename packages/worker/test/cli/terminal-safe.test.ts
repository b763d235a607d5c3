// Review 2 (session 14) #6: an image or a guest puts terminal escapes (OSC 52 clipboard, window title, line erase,
// C1 CSI) into text the CLI prints: a start failure's reason and console tail, a last exit, a health reason, an
// exec's exit error, an image's config. Each print site reachable without a VM runs here through the real CLI, with
// the attack in the state files (or from a fake supervisor / image), and the output must carry none of it raw.
// The workload's own streams (`logs`, `exec` stdout/stderr) must still pass through byte for byte.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { encodeOutput } from "../../src/api/attach-protocol.js";
import { forEachWorker } from "../../src/cli/for-each-worker.js";
import { IiiError } from "../../src/errors.js";
import { processStartTime } from "../../src/host/process-identity.js";
import { workerPaths } from "../../src/paths.js";
import { writeLayout } from "../images/fixtures/oci-writer.js";
import { runWorkerCli, WORKER_CLI } from "../helpers.js";

/** Clipboard write (OSC 52), window title (OSC 0), erase line + carriage return, a C1 CSI, DEL. */
const ATTACK = "\x1b]52;c;Y3VybCBldmlsIHwgc2gK\x07\x1b]0;iii: all good\x07\x1b[2K\r\x9b31mstarted ok\x7f";
/** How the CLI shows it (util/terminal-safe.ts): every control character as \xNN. */
const SHOWN = "\\x1b]52;c;Y3VybCBldmlsIHwgc2gK\\x07\\x1b]0;iii: all good\\x07\\x1b[2K\\x0d\\x9b31mstarted ok\\x7f";
/** Anything a terminal acts on, \n aside (the lines of the output itself). */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;

/** Output bytes with no control character a terminal would act on (and none of U+0080-U+009F as UTF-8). */
function expectTerminalSafe(out: Buffer | string): void {
  const text = Buffer.isBuffer(out) ? out.toString("utf8") : out;
  expect(text).not.toMatch(RAW_CONTROL);
}

interface Bytes {
  code: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

/** The real CLI, its output kept as bytes. */
function runBytes(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<Bytes> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER_CLI, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }));
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-term-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(...names: string[]): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  writeFileSync(join(cwd, "iii.workers.yaml"), `workers:\n${names.map((n) => `  ${n}:\n    image: ghcr.io/acme/${n}:1\n`).join("")}`);
  return { cwd, env: { III_HOME: join(dir, "home") } };
}

function writeState(p: { cwd: string; env: NodeJS.ProcessEnv }, name: string, files: Record<string, unknown>): ReturnType<typeof workerPaths> {
  const paths = workerPaths(name, p.env, p.cwd);
  mkdirSync(paths.logs, { recursive: true });
  for (const [file, value] of Object.entries(files)) writeFileSync(join(paths.dir, file), JSON.stringify(value));
  return paths;
}

const ENDED = "2026-12-06T10:00:00.000Z";
/** vm.json naming this (live) test process: the worker counts as running. */
const liveRecord = () => ({ pid: process.pid, startTime: processStartTime(process.pid), vmm: "qemu", startedAt: "2026-12-06T09:00:00.000Z", guestReadyAt: "2026-12-06T09:00:01.000Z" });

describe("list and inspect show a guest's text, never send it to the terminal", () => {
  it("list: a start failure, a crash, a failed run and an unhealthy worker with escapes in their reasons", async () => {
    const p = project("crashed", "esc", "failed", "sick");
    writeState(p, "esc", { "last-exit.json": { code: null, reason: `worker "esc" failed to start: spawn workload: ${ATTACK}/app/server: ENOENT`, startFailed: true, consoleTail: [ATTACK], endedAt: ENDED } });
    writeState(p, "crashed", { "last-exit.json": { code: null, reason: ATTACK, crashed: true, endedAt: ENDED } });
    writeState(p, "failed", { "last-exit.json": { code: null, reason: ATTACK, state: "failed", tier: "wasm", endedAt: ENDED } });
    writeState(p, "sick", { "vm.json": liveRecord(), "health.json": { state: "unhealthy", reason: ATTACK, since: "2026-12-06T09:30:00.000Z" } });
    const run = await runBytes(["list"], p);
    expect(run.code, run.stderr.toString()).toBe(0);
    expectTerminalSafe(run.stdout);
    const lines = run.stdout.toString("utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(5); // the header and one row each: no line of the attacker's
    expect(lines[1]).toMatch(new RegExp(`^crashed\\s+ghcr.io/acme/crashed:1\\s+crashed: ${escapeRe(SHOWN)}$`));
    expect(lines[2]).toContain(`failed to start: spawn workload: ${SHOWN}/app/server: ENOENT`);
    expect(lines[3]).toContain(`failed: ${SHOWN}`);
    expect(lines[4]).toContain(`unhealthy: ${SHOWN}`);
  });

  it("list --json and inspect: the same values, with C0, DEL and C1 escaped in the JSON text", async () => {
    const p = project("esc");
    writeState(p, "esc", { "last-exit.json": { code: null, reason: ATTACK, startFailed: true, consoleTail: [ATTACK, "\x9b2J"], endedAt: ENDED } });
    const list = await runBytes(["list", "--json"], p);
    expect(list.code, list.stderr.toString()).toBe(0);
    expectTerminalSafe(list.stdout);
    const [row] = JSON.parse(list.stdout.toString("utf8")) as { lastExit: { reason: string; consoleTail: string[] } }[];
    expect(row!.lastExit.reason).toBe(ATTACK);
    expect(row!.lastExit.consoleTail).toEqual([ATTACK, "\x9b2J"]);
    const inspect = await runBytes(["inspect", "esc"], p);
    expect(inspect.code, inspect.stderr.toString()).toBe(0);
    expectTerminalSafe(inspect.stdout);
    expect((JSON.parse(inspect.stdout.toString("utf8")) as { lastExit: { reason: string } }[])[0]!.lastExit.reason).toBe(ATTACK);
  });

  it("list --all: another project's worker, its image and directory from its launch.json", async () => {
    const here = project("web");
    const there = mkdtempSync(join(dir, `other-${"\x1b]0;t\x07"}-`));
    const paths = workerPaths("ghost", here.env, there);
    mkdirSync(paths.dir, { recursive: true });
    writeFileSync(paths.launch, JSON.stringify({ name: "ghost", cwd: there, spec: { image: `ghcr.io/x:${ATTACK}`, network: {} } }));
    writeFileSync(paths.lastExit, JSON.stringify({ code: null, reason: ATTACK, crashed: true, endedAt: ENDED }));
    const run = await runBytes(["list", "--all"], here);
    expect(run.code, run.stderr.toString()).toBe(0);
    expectTerminalSafe(run.stdout);
    expect(run.stdout.toString("utf8")).toContain(`ghcr.io/x:${SHOWN}`);
    expect(run.stdout.toString("utf8")).toContain(`other-\\x1b]0;t\\x07-`);
  });
});

/** A supervisor's API socket for `exec`: accepts the exec, sends `output` on both streams, then exits with `exit`. */
async function fakeSupervisor(socket: string, behaviour: { reject?: string; output?: Buffer; exit?: Record<string, unknown> }): Promise<Server> {
  const wss = new WebSocketServer({ noServer: true });
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.method === "POST" && req.url === "/exec") {
        if (behaviour.reject !== undefined) {
          res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: behaviour.reject }));
        } else res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id: "e1" }));
      } else res.writeHead(404).end("{}");
    });
  });
  server.on("upgrade", (req, sock, head) => {
    wss.handleUpgrade(req, sock, head, (ws) => {
      if (behaviour.output) {
        ws.send(encodeOutput("stdout", 1, behaviour.output));
        ws.send(encodeOutput("stderr", 2, behaviour.output));
      }
      ws.send(JSON.stringify({ type: "exit", code: 0, signal: null, timedOut: false, ...behaviour.exit }), () => ws.close());
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return server;
}

/** Bytes a workload may write: escapes, invalid UTF-8 (a raw 0x9b), CR, NUL. Passed through as they are. */
const WORKLOAD_BYTES = Buffer.concat([Buffer.from(ATTACK), Buffer.from([0x9b, 0x32, 0x4a, 0x00, 0xff, 0x0d, 0x0a])]);

describe("exec: the guest's exit error is shown, the command's own output is not touched", () => {
  it("an EXIT error with escapes prints as one visible line after the byte-exact stdout/stderr", async () => {
    const p = project("live");
    const paths = writeState(p, "live", { "vm.json": liveRecord() });
    const server = await fakeSupervisor(paths.apiSock, { output: WORKLOAD_BYTES, exit: { code: -1, error: `spawn ${ATTACK}: ENOENT\nstarted ok`, shellStatus: 127 } });
    try {
      const run = await runBytes(["exec", "live", "--", "x"], p);
      expect(run.code).toBe(127);
      expect(run.stdout.equals(WORKLOAD_BYTES)).toBe(true);
      expect(run.stderr.subarray(0, WORKLOAD_BYTES.length).equals(WORKLOAD_BYTES)).toBe(true);
      const message = run.stderr.subarray(WORKLOAD_BYTES.length);
      expectTerminalSafe(message);
      expect(message.toString("utf8")).toBe(`iii-worker: spawn ${SHOWN}: ENOENT\\x0astarted ok\n`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it("an EXIT error that is not a string (a forged frame) prints as its JSON, not a crash", async () => {
    const p = project("live");
    const paths = writeState(p, "live", { "vm.json": liveRecord() });
    const server = await fakeSupervisor(paths.apiSock, { exit: { code: 1, error: { toString: 1, text: ATTACK } } });
    try {
      const run = await runBytes(["exec", "live", "--", "x"], p);
      expect(run.code).toBe(1);
      expectTerminalSafe(run.stderr);
      expect(run.stderr.toString("utf8")).toBe(`iii-worker: {"toString":1,"text":"\\u001b]52;c;Y3VybCBldmlsIHwgc2gK\\u0007\\u001b]0;iii: all good\\u0007\\u001b[2K\\r\\x9b31mstarted ok\\x7f"}\n`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it("a refusal whose message carries escapes: the error line is terminal-safe", async () => {
    const p = project("live");
    const paths = writeState(p, "live", { "vm.json": liveRecord() });
    const server = await fakeSupervisor(paths.apiSock, { reject: ATTACK });
    try {
      const run = await runBytes(["exec", "live", "--", "x"], p);
      expect(run.code).toBe(1);
      expect(run.stdout.length).toBe(0);
      expectTerminalSafe(run.stderr);
      expect(run.stderr.toString("utf8")).toBe(`iii-worker: the worker refused the exec: ${SHOWN} (HTTP 400) [ExecRejected]\n`);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe("an error naming a project's text (a dev guest writes the project)", () => {
  it("a worker name with escapes in iii.workers.yaml: the error line and its --json form are terminal-safe", async () => {
    const p = project();
    writeFileSync(join(p.cwd, "iii.workers.yaml"), `workers:\n  "a${ATTACK}":\n    image: x\n`);
    const run = await runBytes(["list"], p);
    expect(run.code).toBe(1);
    expectTerminalSafe(run.stderr);
    expect(run.stderr.toString("utf8")).toContain(`invalid worker name "a${SHOWN}"`);
    expect(run.stderr.toString("utf8").split("\n")).toHaveLength(2);
    const json = await runBytes(["list", "--json"], p);
    expect(json.code).toBe(1);
    expectTerminalSafe(json.stdout);
    const body = JSON.parse(json.stdout.toString("utf8")) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("StateFileCorrupt");
    expect(body.error.message).toContain(`invalid worker name "a${ATTACK}"`);
  });
});

describe("logs pass the workload's bytes through exactly", () => {
  it("stdout.log and stderr.log with escapes and invalid UTF-8 come out byte for byte", async () => {
    const p = project("esc");
    const paths = writeState(p, "esc", {});
    writeFileSync(paths.stdoutLog, WORKLOAD_BYTES);
    writeFileSync(paths.stderrLog, Buffer.concat([WORKLOAD_BYTES, WORKLOAD_BYTES]));
    const run = await runBytes(["logs", "esc"], p);
    expect(run.code, run.stderr.toString()).toBe(0);
    expect(run.stdout.equals(WORKLOAD_BYTES)).toBe(true);
    expect(run.stderr.equals(Buffer.concat([WORKLOAD_BYTES, WORKLOAD_BYTES]))).toBe(true);
  });
});

describe("start's outcome lines and error lines", () => {
  it("forEachWorker (start, stop, restart of several workers) prints a failure's message terminal-safe", async () => {
    const printed: string[] = [];
    const original = console.error;
    const exitCode = process.exitCode;
    console.error = (line: string) => printed.push(line);
    try {
      await forEachWorker(["a", "b"], async (name) => {
        if (name === "a") return `started a\ntimings {"guest:${"\x9b"}x":1}`;
        throw new IiiError("WorkloadStartFailed", `worker "b" failed to start: spawn workload: ${ATTACK} (console: ${ATTACK})`);
      });
    } finally {
      console.error = original;
      process.exitCode = exitCode;
    }
    for (const line of printed) expect(line).not.toMatch(RAW_CONTROL);
    expect(printed).toEqual([`started a\ntimings {"guest:\\x9bx":1}`, `iii-worker: b: worker "b" failed to start: spawn workload: ${SHOWN} (console: ${SHOWN}) [WorkloadStartFailed]`]);
  });
});

describe("add: the image's own config fields", () => {
  it("an OCI layout whose Entrypoint, WorkingDir and labels carry escapes: the summary is terminal-safe", async () => {
    const p = project();
    const layout = join(dir, "layout");
    await writeLayout(layout, "1", {
      layers: [{ entries: [{ name: "bin/", type: "directory" }, { name: "bin/tool", content: "x", mode: 0o755 }] }],
      config: { Entrypoint: [`${ATTACK}/bin/tool`], Cmd: [ATTACK], WorkingDir: `/srv${ATTACK}`, User: "0:0" },
    });
    const run = await runBytes(["add", `oci:${layout}:1`, "--name", "esc"], p);
    expect(run.code, run.stderr.toString()).toBe(0);
    expectTerminalSafe(run.stderr);
    expect(run.stderr.toString("utf8")).toContain(`/srv${SHOWN}`);
  });
});

function escapeRe(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
