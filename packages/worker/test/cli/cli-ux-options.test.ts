import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-cli-ux-opt-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  // a local image (the project dir itself) with no command: a start that got past the checks fails on this machine,
  // never reaching a registry
  writeFileSync(join(cwd, "iii.workers.yaml"), `workers:\n  a:\n    image: dir:${cwd}\n`);
  return { cwd, env: { III_HOME: join(cwd, "home") } };
}

describe("bad option values are named as such", () => {
  it("login of something that is no host names what the user typed, not a made-up reference", async () => {
    const p = project();
    for (const registry of ["", "a b", "http://x"]) {
      const run = await runWorkerCli(["login", registry, "-u", "me", "--password-stdin"], p);
      expect(run.code, run.stderr).toBe(1);
      // was: invalid image reference "a b/probe": the repository must be lowercase path components …
      expect(run.stderr.trim()).toBe(`iii-worker: login ${JSON.stringify(registry)}: not a registry host; name the registry as host.domain, host:port or localhost [InvalidReference]`);
    }
  });

  it("exec --timeout with a bad value is refused before the worker's state (a stopped worker hid it)", async () => {
    const p = project();
    const run = await runWorkerCli(["exec", "a", "--timeout", "abc", "--", "true"], p);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe('iii-worker: invalid --timeout "abc": expected seconds (0 disables) [InvalidOption]');
  });

  it("add refuses --cpus, --memory a VM cannot have (they were recorded, then every start failed)", async () => {
    const p = project();
    const cases: [string[], string][] = [
      // start said: vCPUs must be an integer in 1..255, got 1000 [InvalidOption]
      [["--cpus", "1000"], 'invalid cpus "1000": a worker\'s VM has at most 255 vCPUs'],
      // start said: III_WORKER_MEM_BYTES=109951161678088370000: must be between 1048576 and 9007199254740991 [BadEnv]
      [["--memory", "99999999Ti"], 'invalid memory "99999999Ti": must be at most 4Pi'],
      // start said: memory must be at least 64 MiB (vmm/qemu-argv.ts)
      [["--memory", "32Mi"], 'invalid memory "32Mi": a VM worker needs at least 64Mi (16Mi is a WASM worker\'s least)'],
    ];
    for (const [option, message] of cases) {
      const run = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull", ...option], p);
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr.trim()).toBe(`iii-worker: ${message} [InvalidQuantity]`);
    }
    for (const option of [["--cpus", "255"], ["--memory", "64Mi"]]) {
      const run = await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull", "--force", ...option], p);
      expect(run.code, run.stderr).toBe(0);
    }
  });

  it("--engine-url that is no ws/http URL, and --capture into a missing directory, are refused before anything starts", async () => {
    const p = project();
    const engine = (url: string) => `iii-worker: invalid --engine-url "${url}": expected a URL such as ws://localhost:49134 [InvalidOption]`;
    // each was accepted: the worker started with III_URL=not a url, and reported success
    for (const [args, line] of [
      [["start", "a", "--engine-url", "not a url"], engine("not a url")],
      [["start", "a", "--engine-url", "ws://x:99999"], engine("ws://x:99999")],
      [["start", "a", "--engine-url", "ftp://x"], 'iii-worker: invalid --engine-url "ftp://x": expected a ws://, wss://, http:// or https:// URL [InvalidOption]'],
      [["restart", "a", "--engine-url", "nope"], engine("nope")],
      [["start-all", "--engine-url", "nope"], engine("nope")],
      // the boot failed naming a virtiofsd log's ENOENT, and the next start "cleaned up after the crashed previous run"
      [["start", "a", "--capture", join(p.cwd, "no", "such", "x.pcap")], `iii-worker: invalid --capture ${join(p.cwd, "no", "such", "x.pcap")}: cannot write ${join(p.cwd, "no", "such", "x.pcap")}: directory ${join(p.cwd, "no", "such")} does not exist [InvalidOption]`],
    ] as [string[], string][]) {
      const run = await runWorkerCli(args, p);
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr.trim(), args.join(" ")).toBe(line);
    }
  });
});
