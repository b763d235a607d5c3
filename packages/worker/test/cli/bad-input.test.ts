import { createServer, type Server } from "node:http";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chooseAccel, probeAccelFacts } from "../../src/vmm/accel.js";
import { mkdirs, mkdirsSync } from "../../src/host/mkdirs.js";
import { runWorkerCli } from "../helpers.js";

let dir: string;
/** A local registry index that counts every request: "no network access" is asserted as zero requests. */
let index: Server;
let indexUrl: string;
let requests = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "iii-bad-input-"));
  index = createServer((_, res) => {
    requests += 1;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ version: 1, workers: { alpine: { image: "ghcr.io/iii-hq/alpine", latest: "3.20" } } }));
  });
  await new Promise<void>((resolve) => index.listen(0, "127.0.0.1", resolve));
  indexUrl = `http://127.0.0.1:${(index.address() as { port: number }).port}/index.json`;
});
afterAll(async () => {
  await new Promise((resolve) => index.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function project(): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  return { cwd, env: { III_HOME: join(cwd, "home"), III_REGISTRY_URL: indexUrl } };
}

describe("III_HOME under /proc", () => {
  it("mkdirs fails at once where Node's recursive mkdir spins forever", async () => {
    const started = Date.now();
    expect(() => mkdirsSync("/proc/iii-nope/a/b")).toThrow(/ENOENT/);
    await expect(mkdirs("/proc/iii-nope/a/b")).rejects.toThrow(/ENOENT/);
    expect(Date.now() - started).toBeLessThan(1000);
    const made = join(dir, "x", "y", "z");
    mkdirsSync(made, 0o700);
    await mkdirs(made);
    expect(existsSync(made)).toBe(true);
  });

  it("doctor reports it at once (FAIL III_HOME, exit 1) instead of spinning", async () => {
    const started = Date.now();
    const run = await runWorkerCli(["doctor"], { cwd: dir, env: { III_HOME: "/proc/nope" } });
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAIL {2}III_HOME: \/proc\/nope: cannot create it: ENOENT/m);
    expect(run.stdout).toContain("verdict: VMs cannot run here");
    expect(existsSync("/proc/nope")).toBe(false);
  });

  it("start fails with one line HomeUnwritable", async () => {
    const p = project();
    expect((await runWorkerCli(["add", "--no-pull", "ghcr.io/acme/app:1"], p)).code).toBe(0);
    const run = await runWorkerCli(["start", "app"], { cwd: p.cwd, env: { ...p.env, III_HOME: "/proc/nope" } });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^iii-worker: III_HOME \/proc\/nope is not writable: cannot create it: .* \[HomeUnwritable\]\n$/);
  });

  it("add of a local image fails with one line HomeUnwritable and records nothing", async () => {
    const p = project();
    const layout = join(p.cwd, "layout");
    const { writeLayout } = await import("../images/fixtures/oci-writer.js");
    await writeLayout(layout, "1", { config: { Cmd: ["/x"] }, layers: [{ entries: [{ name: "x", content: "x" }] }] });
    const run = await runWorkerCli(["add", `oci:${layout}:1`], { cwd: p.cwd, env: { ...p.env, III_HOME: "/proc/nope" } });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^iii-worker: III_HOME \/proc\/nope is not writable: cannot create the image cache: ENOENT.* \[HomeUnwritable\]\n$/);
    expect(existsSync(join(p.cwd, "iii.workers.yaml"))).toBe(false);
  });
});

describe("doctor does not promise what cannot run", () => {
  it("III_INIT_PATH=/nonexistent: the guest init check fails and VMs cannot run", async () => {
    const run = await runWorkerCli(["doctor", "--json"], { cwd: dir, env: { III_HOME: join(dir, "home"), III_INIT_PATH: "/nonexistent" } });
    const report = JSON.parse(run.stdout) as { checks: { name: string; verdict: string; detail: string }[]; canRunVm: boolean };
    expect(report.checks.find((c) => c.name === "guest init")).toMatchObject({ verdict: "fail", detail: expect.stringContaining("/nonexistent") });
    expect(report.canRunVm).toBe(false);
    expect(run.code).toBe(1);
    const text = await runWorkerCli(["doctor"], { cwd: dir, env: { III_HOME: join(dir, "home"), III_INIT_PATH: "/nonexistent" } });
    expect(text.stdout).toContain("verdict: VMs cannot run here");
    expect(text.stdout).not.toContain("VMs can run here");
  });

  it("without III_INIT_PATH the built guest init is found", async () => {
    const run = await runWorkerCli(["doctor", "--json"], { cwd: dir, env: { III_HOME: join(dir, "home") } });
    const report = JSON.parse(run.stdout) as { checks: { name: string; verdict: string; detail: string }[] };
    expect(report.checks.find((c) => c.name === "guest init")).toMatchObject({ verdict: "ok", detail: expect.stringMatching(/\/dist\/init\.krun \(static ELF, \d\.\d\d MB\)$/) });
  });

  const detected = chooseAccel({ ...probeAccelFacts({}), override: undefined });
  it.skipIf(detected.accel === "kvm")("III_ACCEL=kvm where detection says KVM cannot boot guests: accel fails, VMs cannot run", async () => {
    const run = await runWorkerCli(["doctor", "--json"], { cwd: dir, env: { III_HOME: join(dir, "home"), III_ACCEL: "kvm" } });
    const report = JSON.parse(run.stdout) as { checks: { name: string; verdict: string; detail: string }[]; canRunVm: boolean };
    expect(report.checks.find((c) => c.name === "accel")).toMatchObject({
      verdict: "fail",
      detail: expect.stringContaining(`III_ACCEL=kvm but KVM cannot boot guests here: ${detected.reason}`),
    });
    expect(report.canRunVm).toBe(false);
    expect(run.code).toBe(1);
  });

  it("III_ACCEL=tcg is fine, a value that is neither kvm nor tcg fails", async () => {
    const home = join(dir, "home");
    const tcg = JSON.parse((await runWorkerCli(["doctor", "--json"], { cwd: dir, env: { III_HOME: home, III_ACCEL: "tcg" } })).stdout);
    expect(tcg.checks.find((c: { name: string }) => c.name === "accel").verdict).toBe("ok");
    const bad = await runWorkerCli(["doctor", "--json"], { cwd: dir, env: { III_HOME: home, III_ACCEL: "hvf" } });
    expect(JSON.parse(bad.stdout).checks.find((c: { name: string }) => c.name === "accel")).toMatchObject({ verdict: "fail", detail: expect.stringContaining("III_ACCEL=hvf is neither kvm nor tcg") });
    expect(bad.code).toBe(1);
  });
});

describe("add validates every option before any network access", () => {
  it.each([
    [["add", "alpine", "--no-pull", "--memory", "1Gb"], /invalid memory "1Gb".*\[InvalidQuantity\]/],
    [["add", "alpine", "--memory", "1Gb"], /invalid memory "1Gb".*\[InvalidQuantity\]/],
    [["add", "alpine", "--cpus", "lots"], /\[InvalidQuantity\]/],
    [["add", "alpine", "--disk", "10"], /invalid disk "10": must be at least 64Mi .*\[InvalidQuantity\]/],
    [["add", "alpine", "--disk", "-1Gi"], /invalid disk "-1Gi": expected a Kubernetes quantity.*\[InvalidQuantity\]/],
    [["add", "alpine", "--disk", "abc"], /invalid disk "abc": expected a Kubernetes quantity.*\[InvalidQuantity\]/],
    [["add", "alpine", "--disk", "32Mi"], /invalid disk "32Mi": must be at least 64Mi \[InvalidQuantity\]/],
    [["add", "alpine", "--port", "99999:1"], /invalid host port "99999"/],
    [["add", "alpine", "--network", "open"], /invalid --network "open".*\[InvalidOption\]/],
    [["add", "alpine", "--pull", "sometimes"], /invalid --pull "sometimes".*\[InvalidOption\]/],
    [["add", "alpine", "--name", "Bad Name"], /\[InvalidWorkerName\]/],
    [["add", "alpine", "--max-execution-ms", "-1"], /invalid --max-execution-ms "-1"/],
    [["add", "alpine", "--cap-add", "GOD_MODE"], /invalid --cap-add "GOD_MODE": not a Linux capability .*\[InvalidOption\]/],
    [["add", "alpine", "--cap-drop", "CAP_"], /invalid --cap-drop "CAP_".*\[InvalidOption\]/],
  ])("%j: one line, exit 1, no request, no state", async (args, message) => {
    const p = project();
    const before = requests;
    const run = await runWorkerCli(args, p);
    expect(run.code).toBe(1);
    expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(message);
    expect(requests).toBe(before);
    expect(existsSync(join(p.cwd, "iii.workers.yaml"))).toBe(false);
    expect(existsSync(join(p.cwd, "home"))).toBe(false);
  });

  it("--no-pull never goes online: a short name with an http(s) index is refused with one line", async () => {
    const p = project();
    const before = requests;
    const run = await runWorkerCli(["add", "alpine", "--no-pull"], p);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^iii-worker: "alpine" is an iii short name, which needs the registry index at http:\/\/127\.0\.0\.1:\d+\/index\.json, and --no-pull never goes online: .*docker\.io\/library\/alpine:latest.* \[RegistryLookupFailed\]\n$/);
    expect(requests).toBe(before);
    expect(existsSync(join(p.cwd, "iii.workers.yaml"))).toBe(false);
  });
});

describe("add says which kind of name it read", () => {
  it("a bare name is an iii short name (through the index); name:tag is Docker Hub's", async () => {
    const p = project();
    const before = requests;
    // a file:// index is not online: --no-pull may read it
    const short = await runWorkerCli(["add", "alpine", "--no-pull"], { cwd: p.cwd, env: { ...p.env, III_REGISTRY_URL: `file://${writeIndex(p.cwd)}` } });
    expect(short.code, short.stderr).toBe(0);
    expect(short.stderr).toMatch(/^alpine: iii short name, resolved through file:\/\/\S+ to ghcr\.io\/iii-hq\/alpine:3\.20$/m);
    const hub = await runWorkerCli(["add", "node:22", "--no-pull"], p);
    expect(hub.code, hub.stderr).toBe(0);
    expect(hub.stderr).toMatch(/^node:22: Docker Hub image docker\.io\/library\/node:22$/m);
    const other = await runWorkerCli(["add", "ghcr.io/acme/app:1", "--no-pull"], p);
    expect(other.stderr).toMatch(/^ghcr\.io\/acme\/app:1: image on registry ghcr\.io$/m);
    expect(requests).toBe(before);
    const yaml = readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8");
    expect(yaml).toContain("ghcr.io/iii-hq/alpine:3.20");
    expect(yaml).toContain("node:22");
  });
});

function writeIndex(at: string): string {
  const path = join(at, "index.json");
  writeFileSync(path, JSON.stringify({ version: 1, workers: { alpine: { image: "ghcr.io/iii-hq/alpine", latest: "3.20" } } }));
  return path;
}

describe("dev validates its options before it touches the project", () => {
  it.each([["0"], ["65536"], ["http"]])("--host-port %s: one line, exit 1, no .iii directory", async (port) => {
    const p = project();
    writeFileSync(join(p.cwd, "package.json"), JSON.stringify({ name: "x", scripts: { start: "node x.js" } }));
    const run = await runWorkerCli(["dev", p.cwd, "--host-port", port], p);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^iii-worker: invalid --host-port "${port}": must be a port number from 1 to 65535 \\[InvalidOption\\]\\n$`));
    expect(existsSync(join(p.cwd, ".iii"))).toBe(false);
    expect(existsSync(join(p.cwd, "home"))).toBe(false);
  });
});
