import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import net from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SupervisorClient } from "../../src/api/client.js";
import { WORKER_CLI } from "../helpers.js";
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

/** A bash pipeline around the real CLI (`$CLI`), timed; `input` is its stdin (else /dev/null). */
function shell(p: Project, script: string, input?: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", script], {
      cwd: p.dir,
      env: { ...process.env, ...p.env, CLI: `${process.execPath} ${WORKER_CLI}` },
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    if (input !== undefined) child.stdin!.end(input);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr, ms: Date.now() - t }));
  });
}

/** The records of a classic pcap file (little-endian, microseconds), checked as it is parsed. */
function pcapRecords(file: Buffer): Buffer[] {
  expect(file.readUInt32LE(0)).toBe(0xa1b2c3d4);
  expect(file.readUInt32LE(20)).toBe(1); // LINKTYPE_ETHERNET
  const records: Buffer[] = [];
  let off = 24;
  while (off + 16 <= file.length) {
    const caplen = file.readUInt32LE(off + 8);
    if (off + 16 + caplen > file.length) break; // the writer may be mid-record
    records.push(file.subarray(off + 16, off + 16 + caplen));
    off += 16 + caplen;
  }
  return records;
}

describe.skipIf(!!skip)("exec and attach in a real VM (vm)", () => {
  const p = new Project();
  let client: SupervisorClient;
  let http: Server;
  let httpPort = 0;
  // A getter: p.dir makes the project's directory, which a skipped suite (III_SKIP_VM=1) must not leave behind.
  const capture = () => join(p.dir, "ex.pcap");

  beforeAll(async () => {
    http = createServer((_, res) => res.end("hello from the host\n"));
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    httpPort = (http.address() as net.AddressInfo).port;
    const rootfs = busyboxRootfs();
    const workload = 'echo "up $III_ISOLATION $III_WORKER_NAME"; while :; do sleep 1; done';
    expect((await p.cli(["add", `dir:${rootfs}`, "--name", "ex", "--host-port", String(httpPort), "--", "sh", "-c", workload])).code).toBe(0);
    const start = await p.cli(["start", "ex", "--capture", "ex.pcap"]);
    expect(start.code, start.stderr).toBe(0);
    client = new SupervisorClient(join(p.managed("ex"), "api.sock"));
  }, 180_000);
  afterAll(async () => {
    http?.close();
    await p.dispose();
  });

  it("without -i the command's stdin is at end-of-file at once: wc -c prints 0 and returns", async () => {
    const r = await shell(p, "$CLI exec ex -- wc -c </dev/null");
    expect(r).toMatchObject({ code: 0, stdout: "0\n", stderr: "" });
    expect(r.ms).toBeLessThan(10_000);
    // Input given without -i is not read; with -i it is, to its end.
    expect(await shell(p, "$CLI exec ex -- wc -c", "abc")).toMatchObject({ code: 0, stdout: "0\n" });
    expect(await shell(p, "$CLI exec -i ex -- wc -c", "abc")).toMatchObject({ code: 0, stdout: "3\n" });
  }, 60_000);

  it("a missing binary exits 127 (command not found), a non-executable file 126, -w /nonexist names the directory", async () => {
    const missing = await p.cli(["exec", "ex", "--", "no-such-command"]);
    expect(missing).toMatchObject({ code: 127, stdout: "" });
    expect(missing.stderr).toMatch(/^iii-worker: no-such-command: command not found \(ENOENT\)\n$/);
    const path = await p.cli(["exec", "ex", "--", "/no/such/file"]);
    expect(path.code).toBe(127);
    expect(path.stderr).toContain("/no/such/file: no such file or directory");
    expect((await p.cli(["exec", "ex", "--", "sh", "-c", "printf 'echo hi\\n' > /tmp/plain; chmod 644 /tmp/plain"])).code).toBe(0);
    const plain = await p.cli(["exec", "ex", "--", "/tmp/plain"]);
    expect(plain.code).toBe(126);
    expect(plain.stderr).toMatch(/^iii-worker: \/tmp\/plain: cannot execute: permission denied \(EACCES\)\n$/);
    const cwd = await p.cli(["exec", "ex", "-w", "/nonexist", "--", "true"]);
    expect(cwd.code).toBe(126);
    expect(cwd.stderr).toMatch(/^iii-worker: cannot use working directory \/nonexist: no such file or directory \(ENOENT\)\n$/);
  }, 60_000);

  it("exec … | head -c1 ends the CLI quietly: 141 (SIGPIPE's status) while the command still writes", async () => {
    const r = await shell(p, '$CLI exec ex -- yes | head -c1; echo " ${PIPESTATUS[0]}"');
    expect(r.stdout).toBe("y 141\n");
    expect(r.stderr).toBe("");
    expect(r.ms).toBeLessThan(15_000);
    // The command was killed with the attachment: no `yes` is left in the guest.
    await waitFor(async () => (await p.cli(["exec", "ex", "--", "sh", "-c", "pidof yes || true"])).stdout.trim() === "", 10_000, "yes to be gone");
  }, 60_000);

  it("-t: the end of stdin types no NUL into the terminal, and a reader in either mode sees its end", async () => {
    // The reader switches to raw mode after the input and its end arrived: it must read exactly "x\n".
    const raw = await shell(p, "$CLI exec -i -t ex -- sh -c 'sleep 1; stty raw -echo; dd bs=64 count=1 2>/dev/null | od -An -c'", "x\n");
    expect(raw.code, raw.stderr).toBe(0);
    expect(raw.stdout).not.toContain("\\0");
    expect(raw.stdout.replace(/\s+/g, " ")).toContain("x \\n");
    // A canonical reader gets end-of-file, after a partial last line too.
    const cat = await shell(p, "$CLI exec -i -t ex -- sh -c 'stty -echo; cat; echo END'", "a\nb");
    expect(cat.code, cat.stderr).toBe(0);
    expect(cat.stdout.replace(/\r/g, "")).toMatch(/^(a\nb)?a\nbEND\n$/); // the first "a\nb" is the echo, when it beat stty
    expect(cat.ms).toBeLessThan(15_000);
    // -t without -i: the terminal gets no input at all (as with docker exec -t), neither the data nor an end.
    const alone = await shell(p, "$CLI exec -t ex -- sh -c 'sleep 1; stty raw -echo; timeout 2 dd bs=64 count=1 2>/dev/null | od -An -c; echo DONE'", "x\n");
    expect(alone.code, alone.stderr).toBe(0);
    const seen = alone.stdout.replace(/\r/g, "").trim();
    expect(seen).toMatch(/DONE$/);
    expect(seen).not.toMatch(/x|\\0|\\n/); // od printed nothing: dd read nothing before its timeout
  }, 60_000);

  it("the workload and execs see III_ISOLATION=microvm and III_WORKER_NAME", async () => {
    expect(p.read("managed/ex/logs/stdout.log")).toContain("up microvm ex\n");
    const r = await p.cli(["exec", "ex", "--", "sh", "-c", 'echo "$III_ISOLATION $III_WORKER_NAME"']);
    expect(r).toMatchObject({ code: 0, stdout: "microvm ex\n" });
  }, 60_000);

  it("start --capture writes a pcap of the guest's traffic: a fetch from a host listener is in it", async () => {
    const r = await p.cli(["exec", "ex", "--", "wget", "-q", "-O-", `http://host.iii.internal:${httpPort}/`]);
    expect(r, r.stderr).toMatchObject({ code: 0, stdout: "hello from the host\n" });
    const toPort = (frame: Buffer) => frame.length >= 38 && frame.readUInt16BE(12) === 0x0800 && frame[23] === 6 && frame.readUInt16BE(14 + (frame[14]! & 15) * 4 + 2) === httpPort;
    const fromPort = (frame: Buffer) => frame.length >= 38 && frame.readUInt16BE(12) === 0x0800 && frame[23] === 6 && frame.readUInt16BE(14 + (frame[14]! & 15) * 4) === httpPort;
    await waitFor(() => pcapRecords(readFileSync(capture())).some(fromPort), 5_000, "the reply in the capture");
    const records = pcapRecords(readFileSync(capture()));
    const out = records.filter(toPort);
    // The guest's SYN (flags 0x02) to the listener, from its own address, and the payload both ways.
    expect(out.some((f) => (f[14 + (f[14]! & 15) * 4 + 13]! & 0x3f) === 0x02)).toBe(true);
    expect(out.every((f) => [...f.subarray(26, 30)].join(".").startsWith("100.96."))).toBe(true);
    expect(records.some((f) => toPort(f) && f.includes("GET / HTTP/1.1"))).toBe(true);
    expect(records.some((f) => fromPort(f) && f.includes("hello from the host"))).toBe(true);
  }, 60_000);

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
