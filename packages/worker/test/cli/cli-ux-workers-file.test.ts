import { spawn, execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { managedDir } from "../../src/paths.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { runWorkerCli } from "../helpers.js";
import { expectWorkersFileRefused } from "./refused-workers-file.js";

// A demanding user's iii.workers.yaml: what add/remove/list/inspect do with a file they wrote by hand, or one that
// is not a file at all. The product rule: bad input gets one clear line and a non-zero exit, and loses no data.
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-cli-ux-file-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(text?: string | Buffer): { cwd: string; path: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  const path = join(cwd, "iii.workers.yaml");
  if (text !== undefined) writeFileSync(path, text);
  return { cwd, path, env: { III_HOME: join(cwd, "home") } };
}

const HAND_WRITTEN = `# my workers: keep this note
workers:
  # the api, pinned
  api:
    image: ghcr.io/acme/api:1 # pinned on purpose
    x-owner: team-a
    resources: {memory: 512Mi}
  zeta:
    image: ghcr.io/acme/zeta:1
deploy:
  region: eu
`;

describe("a write keeps what the user wrote", () => {
  it("add and remove keep comments, order and keys iii does not know; only the touched entry changes", async () => {
    const { cwd, path, env } = project(HAND_WRITTEN);
    const add = await runWorkerCli(["add", "ghcr.io/acme/new:1", "--name", "alpha", "--no-pull"], { cwd, env });
    expect(add.code, add.stderr).toBe(0);
    const added = readFileSync(path, "utf8");
    for (const kept of ["# my workers: keep this note", "# the api, pinned", "# pinned on purpose", "x-owner: team-a", "region: eu", "memory: 512Mi"]) {
      expect(added).toContain(kept);
    }
    // order kept: the new entry goes last, the user's entries stay where they were
    expect(added.indexOf("api:")).toBeLessThan(added.indexOf("zeta:"));
    expect(added.indexOf("zeta:")).toBeLessThan(added.indexOf("alpha:"));
    expect((parse(added) as { workers: Record<string, { image: string }> }).workers.alpha!.image).toBe("ghcr.io/acme/new:1");

    const remove = await runWorkerCli(["remove", "zeta"], { cwd, env });
    expect(remove.code, remove.stderr).toBe(0);
    const removed = readFileSync(path, "utf8");
    expect(removed).not.toContain("zeta");
    for (const kept of ["# my workers: keep this note", "# pinned on purpose", "x-owner: team-a", "region: eu"]) expect(removed).toContain(kept);
    const list = await runWorkerCli(["list", "--json"], { cwd, env });
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((w) => w.name).sort()).toEqual(["alpha", "api"]);
  });

  it("an edit the user's layout cannot hold (an alias into the removed entry) is written in iii's layout, and says so", async () => {
    const { cwd, path, env } = project("# c\nworkers:\n  a:\n    image: ghcr.io/x/a:1\n    env: &common {A: '1'}\n  b:\n    image: ghcr.io/x/b:1\n    env: *common\n");
    const run = await runWorkerCli(["remove", "a"], { cwd, env });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/^iii-worker: note: .*iii\.workers\.yaml was rewritten in iii's own layout, without its comments and unknown keys \(Unresolved alias.*\)\nremoved worker a\n$/);
    expect((parse(readFileSync(path, "utf8")) as { workers: Record<string, { env: object }> }).workers).toEqual({ b: expect.objectContaining({ env: { A: "1" } }) });
  });

  it("a new entry in `workers: {}` is written as a block, and a new file gets the header", async () => {
    const inline = project("workers: {} # none yet\n");
    expect((await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull"], inline)).code).toBe(0);
    const text = readFileSync(inline.path, "utf8");
    expect(text).toContain("# none yet");
    expect(text).toMatch(/^workers:.*\n {2}w:\n {4}image: ghcr.io\/acme\/w:1\n/m);
    const fresh = project();
    expect((await runWorkerCli(["add", "ghcr.io/acme/w:1", "--no-pull"], fresh)).code).toBe(0);
    expect(readFileSync(fresh.path, "utf8")).toMatch(/^# iii managed workers/);
  });
});

describe("a file iii cannot read is refused in one line and left as it was", () => {
  const yamlCases: [string, string | Buffer, RegExp][] = [
    // billion laughs: 9^9 "lol"s from a few hundred bytes; yaml stops it, and that is the user's file, not a bug
    [
      "alias bomb",
      `a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n${"bcdefghi"
        .split("")
        .map((c, i) => `${c}: &${c} [${Array(9).fill(`*${"abcdefghi"[i]}`).join(",")}]`)
        .join("\n")}\nworkers: {}\n`,
      /is not valid YAML: Excessive alias count.*\[StateFileCorrupt\]$/,
    ],
    ["alias without its anchor", "x: *nope\nworkers: {}\n", /is not valid YAML: Unresolved alias.*\[StateFileCorrupt\]$/],
    // read as U+FFFD, the next add wrote the replacement characters back over the user's bytes
    ["not UTF-8", Buffer.from('workers:\n  a:\n    image: "dir:/caf\xe9"\n', "latin1"), /is not UTF-8 text \(an invalid byte on line 3\).*\[StateFileCorrupt\]$/],
    ["two documents", "workers: {}\n---\nworkers: {}\n", /\(line 2, column 1\): it holds more than one YAML document.*\[StateFileCorrupt\]$/],
    ["a duplicate key", "workers:\n  a: {image: x}\n  a: {image: y}\n", /\(line 3, column 3\): Map keys must be unique \[StateFileCorrupt\]$/],
  ];
  for (const [what, text, message] of yamlCases) {
    it(`${what}: list, add and remove say so in one line, exit 1, and the file is unchanged`, async () => {
      await expectWorkersFileRefused(project(text), [["list"], ["add", "ghcr.io/acme/w:1", "--no-pull"], ["remove", "a"], ["inspect", "a"]], message);
    });
  }

  it("a FIFO at iii.workers.yaml: every command refuses it at once (a plain read blocked forever)", async () => {
    const { cwd, path, env } = project();
    execFileSync("mkfifo", [path]);
    const started = Date.now();
    for (const args of [["list"], ["inspect", "a"], ["remove", "a"], ["start", "a"], ["stop", "a"], ["add", "ghcr.io/acme/w:1", "--no-pull"]]) {
      const run = await runWorkerCli(args, { cwd, env });
      expect(run.code, `${args[0]}: ${run.stderr}`).toBe(1);
      expect(run.stderr.trim().split("\n"), args[0]).toHaveLength(1);
      expect(run.stderr, args[0]).toMatch(/iii\.workers\.yaml (is a FIFO \(named pipe\), not a regular file.*\[StateFileUnreadable\]|is not a regular file \[StateFileUnwritable\])/);
    }
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it("a file the user made read-only (chmod a-w) is not replaced by add or remove, and remove keeps the data", async () => {
    const { cwd, path, env } = project("workers:\n  a: {image: ghcr.io/acme/a:1}\n");
    chmodSync(path, 0o444);
    // a's data (its logs): `remove` deleted it, then failed to write the file, and a stayed listed without it
    const log = join(managedDir("a", env, cwd), "logs", "stdout.log");
    mkdirSync(dirname(log), { recursive: true, mode: 0o700 });
    chmodSync(join(cwd, "home"), 0o700);
    chmodSync(join(cwd, "home", "managed"), 0o700);
    writeFileSync(log, "precious\n");
    for (const args of [["add", "ghcr.io/acme/w:1", "--no-pull"], ["remove", "a"]]) {
      const run = await runWorkerCli(args, { cwd, env });
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr.trim()).toMatch(/iii\.workers\.yaml is read-only \(mode 0444\); make it writable \(chmod u\+w\) for iii-worker to change it \[StateFileUnwritable\]$/);
    }
    expect(readFileSync(path, "utf8")).toBe("workers:\n  a: {image: ghcr.io/acme/a:1}\n");
    expect(readFileSync(log, "utf8")).toBe("precious\n");
  });

  // root only (a tmpfs remounted read-only: root writes through a mode-0555 directory)
  it.skipIf(process.getuid?.() !== 0)("remove in a read-only project directory keeps the worker's data (it deleted it, then failed to write)", async () => {
    const { cwd, env } = project();
    const proj = join(cwd, "ro");
    mkdirSync(proj);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", proj]);
    try {
      writeFileSync(join(proj, "iii.workers.yaml"), "workers:\n  a: {image: ghcr.io/acme/a:1}\n");
      const log = join(managedDir("a", env, proj), "logs", "stdout.log");
      mkdirSync(dirname(log), { recursive: true, mode: 0o700 });
      chmodSync(join(cwd, "home"), 0o700);
      chmodSync(join(cwd, "home", "managed"), 0o700);
      writeFileSync(log, "precious\n");
      execFileSync("mount", ["-o", "remount,ro", proj]);
      const run = await runWorkerCli(["remove", "a"], { cwd: proj, env });
      expect(run.code).toBe(1);
      expect(existsSync(log) && readFileSync(log, "utf8")).toBe("precious\n");
      expect(run.stderr.trim()).toMatch(/^iii-worker: cannot write .*iii\.workers\.yaml: EROFS: .*\[StateFileUnwritable\]$/);
    } finally {
      execFileSync("umount", [proj]);
    }
  });

  it("a directory at iii.workers.yaml is named as one, with a read code", async () => {
    const { cwd, path, env } = project();
    mkdirSync(path);
    const run = await runWorkerCli(["list"], { cwd, env });
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toMatch(/iii\.workers\.yaml is a directory, not a regular file: move it away \[StateFileUnreadable\]$/);
  });
});

describe("Ctrl-C or SIGTERM while the file is written", () => {
  it("leaves no iii.workers.yaml.<hex>.tmp behind, and the file is whole", async () => {
    const { cwd, path } = project("# mine\nworkers: {}\n");
    // A writer saving in a loop (fsync dominates, so most signals land while a temp file exists), as add does.
    const writer = join(cwd, "writer.mjs");
    const workerIndex = new URL("../../dist/index.js", import.meta.url).href;
    writeFileSync(
      writer,
      `import { updateWorkersFile } from ${JSON.stringify(workerIndex)};
       let announced = false;
       for (let i = 0; ; i++) {
         await updateWorkersFile(${JSON.stringify(path)}, (f) => {
           f.workers["w" + (i % 40)] = { image: "ghcr.io/a/" + "x".repeat(2000) + ":" + i, env: {}, resources: {}, ports: [], mounts: [], network: { allow: [], deny: [], hostPorts: [] } };
         });
         if (!announced) { announced = true; process.stdout.write("saving\\n"); }
       }`,
    );
    const statuses: (string | null)[] = [];
    for (let round = 0; round < 20; round++) {
      const child = spawn(process.execPath, [writer], { stdio: ["ignore", "pipe", "ignore"] });
      await new Promise((r) => child.stdout!.once("data", r));
      await new Promise((r) => setTimeout(r, 5 + Math.floor(Math.random() * 40)));
      child.kill(round % 2 ? "SIGTERM" : "SIGINT");
      // a writer still saving 5 s later swallowed the signal (one caught as a write ended, then dropped)
      const hung = setTimeout(() => child.kill("SIGKILL"), 5000);
      statuses.push(await new Promise<string | null>((r) => child.on("close", (_code, signal) => r(signal))));
      clearTimeout(hung);
    }
    // the signal still ends the process as it would have (no handler swallowed it)
    expect(statuses.filter((s) => s !== "SIGINT" && s !== "SIGTERM")).toEqual([]);
    expect(readdirSync(cwd).filter((n) => n.endsWith(".tmp"))).toEqual([]);
    const text = readFileSync(path, "utf8");
    expect(text).toMatch(/^# mine\n/);
    expect(Object.keys((parse(text) as { workers: object }).workers).length).toBeGreaterThan(0);
  });
});
