import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseLogTime } from "../../src/log-times.js";
import { workerPaths } from "../../src/paths.js";
import { runWorkerCli, WORKER_CLI } from "../helpers.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-commands-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(): { cwd: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  return { cwd, env: { III_HOME: join(dir, "home") } };
}

async function addWorkers(p: { cwd: string; env: NodeJS.ProcessEnv }, ...names: string[]): Promise<void> {
  for (const name of names) {
    const run = await runWorkerCli(["add", "--no-pull", `ghcr.io/acme/${name}:1`, "-e", "A=1"], p);
    expect(run.code, run.stderr).toBe(0);
  }
}

describe("inspect", () => {
  it("prints the spec, the state and the last exit of each named worker as a JSON array", async () => {
    const p = project();
    await addWorkers(p, "web", "db");
    const paths = workerPaths("db", p.env, p.cwd);
    mkdirSync(paths.dir, { recursive: true });
    writeFileSync(paths.lastExit, JSON.stringify({ code: 3, reason: "workload exited", endedAt: "2026-12-05T10:00:00.000Z" }));
    const run = await runWorkerCli(["inspect", "web", "db"], p);
    expect(run.code, run.stderr).toBe(0);
    const [web, db] = JSON.parse(run.stdout) as Record<string, any>[];
    expect(web).toMatchObject({
      name: "web",
      image: "ghcr.io/acme/web:1",
      tier: "vm",
      spec: { image: "ghcr.io/acme/web:1", env: { A: "1" } },
      state: { status: "stopped", running: false, pid: null },
      lastExit: null,
    });
    expect(db!.lastExit).toEqual({ code: 3, reason: "workload exited", endedAt: "2026-12-05T10:00:00.000Z" });
    expect(db!.paths.dir).toBe(paths.dir);
  });

  it("names an unknown worker before printing anything", async () => {
    const p = project();
    await addWorkers(p, "web");
    const run = await runWorkerCli(["inspect", "web", "ghost"], p);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe('iii-worker: no worker named "ghost" in iii.workers.yaml [WorkerNotFound]\n');
  });
});

describe("start / stop / restart with several names", () => {
  it.each([["start"], ["stop"], ["restart"]])("%s checks every name first: an unknown one changes nothing", async (command) => {
    const p = project();
    await addWorkers(p, "web");
    const before = readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8");
    const run = await runWorkerCli([command, "web", "ghost"], p);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('iii-worker: no worker named "ghost" in iii.workers.yaml [WorkerNotFound]\n');
    expect(readFileSync(join(p.cwd, "iii.workers.yaml"), "utf8")).toBe(before);
    expect(JSON.parse((await runWorkerCli(["list", "--json"], p)).stdout)[0].status).toBe("stopped");
  });

  it.each([
    [["stop", "web", "--timeout", "soon"], /invalid --timeout "soon"/],
    [["restart", "web", "--timeout", "-1"], /invalid --timeout "-1"/],
    [["restart", "web", "--boot-timeout", "x"], /invalid --boot-timeout "x"/],
    [["start", "web", "--pull", "sometimes"], /invalid --pull "sometimes"/],
  ])("%j: a bad option fails before anything runs", async (args, message) => {
    const p = project();
    await addWorkers(p, "web");
    const run = await runWorkerCli(args, p);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(message);
    expect(run.stderr.trimEnd().split("\n")).toHaveLength(1);
  });

  it("stop of several workers that are not running reports each", async () => {
    const p = project();
    await addWorkers(p, "web", "db");
    const run = await runWorkerCli(["stop", "web", "db"], p);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toBe("web is not running\ndb is not running\n");
  });

  it("needs at least one name", async () => {
    const run = await runWorkerCli(["restart"], project());
    expect(run.code).toBe(2);
    expect(run.stderr).toBe("iii-worker: missing required argument 'name' [UsageError]\n");
  });
});

describe("list -q and --all", () => {
  it("-q prints only the names, one a line (nothing for no workers)", async () => {
    const p = project();
    expect((await runWorkerCli(["list", "-q"], p)).stdout).toBe("");
    await addWorkers(p, "web", "db");
    const run = await runWorkerCli(["list", "-q"], p);
    expect(run.stdout).toBe("db\nweb\n");
  });

  it("--all adds workers of other projects and dev sandboxes that have run under III_HOME, with their project", async () => {
    const home = { III_HOME: join(dir, "home-all") };
    const here = { cwd: mkdtempSync(join(dir, "here-")), env: home };
    const there = { cwd: mkdtempSync(join(dir, "there-")), env: home };
    await addWorkers(here, "web");
    await addWorkers(there, "db");
    // what `start` leaves for a worker of another project (launch.json names its project) and for a dev sandbox
    for (const [name, cwd, image] of [["db", there.cwd, "ghcr.io/acme/db:1"], ["iii-dev-app", here.cwd, "oci:/x:latest"]] as const) {
      const paths = workerPaths(name, home, cwd);
      mkdirSync(paths.dir, { recursive: true });
      writeFileSync(paths.launch, JSON.stringify({ name, cwd, spec: { image, env: {}, resources: {}, ports: [], mounts: [], network: { allow: [], deny: [], hostPorts: [] } }, engineUrl: "ws://localhost:1" }));
    }
    expect((await runWorkerCli(["list", "-q"], here)).stdout).toBe("web\n");
    expect((await runWorkerCli(["list", "-q", "--all"], here)).stdout.split("\n").filter(Boolean).sort()).toEqual(["db", "iii-dev-app", "web"]);
    const table = await runWorkerCli(["list", "--all"], here);
    expect(table.stdout).toMatch(/^NAME\s+IMAGE\s+STATUS\s+PROJECT$/m);
    expect(table.stdout).toMatch(new RegExp(`^db\\s+ghcr\\.io/acme/db:1\\s+stopped\\s+${there.cwd}$`, "m"));
    const json = JSON.parse((await runWorkerCli(["list", "--all", "--json"], here)).stdout) as { name: string; project: string }[];
    expect(json.map((r) => [r.name, r.project]).sort()).toEqual([["db", there.cwd], ["iii-dev-app", here.cwd], ["web", here.cwd]]);
    // without --all the JSON keeps its shape (no project field)
    expect(Object.keys(JSON.parse((await runWorkerCli(["list", "--json"], here)).stdout)[0])).not.toContain("project");
  });
});

describe("logs --since / --until / --timestamps", () => {
  const t0 = Date.parse("2026-12-05T10:00:00.000Z");
  function withLogs(): { cwd: string; env: NodeJS.ProcessEnv } {
    const p = project();
    const paths = workerPaths("web", p.env, p.cwd);
    mkdirSync(paths.logs, { recursive: true });
    const lines = ["one\n", "two\n", "three\n"];
    writeFileSync(paths.stdoutLog, lines.join(""));
    // one chunk per line, a minute apart (what the supervisor's log writer records)
    writeFileSync(`${paths.stdoutLog}.times`, `0 ${t0}\n4 ${t0 + 60_000}\n8 ${t0 + 120_000}\n`);
    writeFileSync(paths.stderrLog, "");
    return p;
  }

  it("filters by write time and prefixes RFC 3339 times", async () => {
    const p = withLogs();
    await addWorkers(p, "web");
    const all = await runWorkerCli(["logs", "web", "--stdout", "-t"], p);
    expect(all.stdout).toBe("2026-12-05T10:00:00.000Z one\n2026-12-05T10:01:00.000Z two\n2026-12-05T10:02:00.000Z three\n");
    const since = await runWorkerCli(["logs", "web", "--stdout", "--since", "2026-12-05T10:01:00Z"], p);
    expect(since.stdout).toBe("two\nthree\n");
    const until = await runWorkerCli(["logs", "web", "--stdout", "--until", "2026-12-05T12:01:00+02:00"], p);
    expect(until.stdout).toBe("one\n");
    const both = await runWorkerCli(["logs", "web", "--stdout", "--since", String(t0 / 1000 + 30), "--until", "2026-12-05T10:02:00Z", "-t"], p);
    expect(both.stdout).toBe("2026-12-05T10:01:00.000Z two\n");
    const tail = await runWorkerCli(["logs", "web", "--stdout", "--since", "2026-12-05T10:00:00Z", "-n", "1"], p);
    expect(tail.stdout).toBe("three\n");
    // relative: everything was written long before the last 10 minutes
    expect((await runWorkerCli(["logs", "web", "--stdout", "--since", "10m"], p)).stdout).toBe("");
  });

  it.each([["--since", "yesterday"], ["--until", "10 minutes"], ["--since", "2026-13-45T99:00:00Z"]])("%s %s is refused with one line", async (flag, value) => {
    const p = withLogs();
    await addWorkers(p, "web");
    const run = await runWorkerCli(["logs", "web", flag, value], p);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(new RegExp(`^iii-worker: invalid ${flag} "${value}": expected an RFC 3339 time .* \\[InvalidOption\\]\\n$`));
  });

  it("parses docker's forms", () => {
    const now = Date.parse("2026-12-05T12:00:00Z");
    expect(parseLogTime("10m", "--since", now)).toBe(now - 600_000);
    expect(parseLogTime("1h30m", "--since", now)).toBe(now - 5_400_000);
    expect(parseLogTime("1.5h", "--since", now)).toBe(now - 5_400_000);
    expect(parseLogTime("250ms", "--since", now)).toBe(now - 250);
    expect(parseLogTime("1733392800", "--since", now)).toBe(1_733_392_800_000);
    expect(parseLogTime("1733392800.5", "--since", now)).toBe(1_733_392_800_500);
    expect(parseLogTime("2026-12-05T10:00:00.123456789Z", "--since", now)).toBe(Date.parse("2026-12-05T10:00:00.123Z"));
    expect(parseLogTime("2026-12-05t10:00:00z", "--since", now)).toBe(Date.parse("2026-12-05T10:00:00Z"));
    expect(parseLogTime("2026-12-05", "--since", now)).toBe(new Date(2026, 11, 5).getTime());
  });
});

describe("a reader that goes away", () => {
  it("logs | head -c1 ends quietly with 141 (SIGPIPE's status), no EPIPE stack", async () => {
    const p = project();
    await addWorkers(p, "web");
    const paths = workerPaths("web", p.env, p.cwd);
    mkdirSync(paths.logs, { recursive: true });
    writeFileSync(paths.stdoutLog, "x".repeat(4 * 1024 * 1024)); // far more than a pipe holds
    const run = spawnSync("bash", ["-c", `"${process.execPath}" "${WORKER_CLI}" logs web --stdout | head -c1; echo " \${PIPESTATUS[0]}"`], {
      cwd: p.cwd,
      env: { ...process.env, ...p.env },
      encoding: "utf8",
    });
    expect(run.stdout).toBe("x 141\n");
    expect(run.stderr).toBe("");
  });
});

describe("completion", () => {
  it("bash: completes commands, a command's flags and worker names, for iii-worker and iii worker", async () => {
    const p = project();
    await addWorkers(p, "web", "db");
    const script = await runWorkerCli(["completion", "bash"], p);
    expect(script.code).toBe(0);
    const bin = join(dir, "bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, "iii-worker"), `#!/bin/sh\nexec "${process.execPath}" "${WORKER_CLI}" "$@"\n`, { mode: 0o755 });
    const complete = (words: string[]) => {
      const run = spawnSync(
        "bash",
        ["-c", `source "$1"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _iii_worker; printf '%s\\n' "\${COMPREPLY[@]}"`, "bash", join(dir, "completion.bash")],
        { cwd: p.cwd, env: { ...process.env, ...p.env, PATH: `${bin}:${process.env.PATH}` }, encoding: "utf8" },
      );
      return run.stdout.split("\n").filter(Boolean).sort();
    };
    writeFileSync(join(dir, "completion.bash"), script.stdout);
    expect(complete(["iii-worker", "re"])).toEqual(["remove", "restart"]);
    expect(complete(["iii-worker", "logs", "--t"])).toEqual(["--tail", "--timestamps"]);
    expect(complete(["iii-worker", "stop", ""])).toEqual(["db", "web"]);
    expect(complete(["iii", "worker", "inspect", "w"])).toEqual(["web"]);
    expect(complete(["iii", "wo"])).toEqual(["worker"]);
    expect(complete(["iii-worker", "completion", ""])).toEqual(["bash", "zsh"]);
    expect(complete(["iii-worker", ""])).not.toContain("__vm-boot");
  });

  it("zsh loads the same through bashcompinit; another shell is a usage error", async () => {
    const p = project();
    const zsh = await runWorkerCli(["completion", "zsh"], p);
    expect(zsh.stdout).toMatch(/^#compdef iii-worker iii\n/);
    expect(zsh.stdout).toContain("bashcompinit");
    expect(zsh.stdout).toContain("complete -F _iii_worker iii-worker iii");
    const fish = await runWorkerCli(["completion", "fish"], p);
    expect(fish.code).toBe(2);
    expect(fish.stderr).toBe('iii-worker: completion: unknown shell "fish": expected bash or zsh [UsageError]\n');
  });
});
