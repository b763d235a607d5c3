import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";
import { expectWorkersFileRefused } from "./refused-workers-file.js";

// review5-s18 #3-#7: what the real CLI makes of YAML that says less (or more) than it seems to.
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-cli-yaml-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function project(text: string | Buffer): { cwd: string; path: string; env: NodeJS.ProcessEnv } {
  const cwd = mkdtempSync(join(dir, "p-"));
  const path = join(cwd, "iii.workers.yaml");
  writeFileSync(path, text);
  return { cwd, path, env: { III_HOME: join(cwd, "home") } };
}

/** A WASI core module with nothing in it: enough for `add` to tell a module from a component. */
function wasmFile(cwd: string): string {
  const path = join(cwd, "m.wasm");
  writeFileSync(path, Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]));
  return path;
}

async function refusedEverywhere(text: string, message: RegExp): Promise<void> {
  await expectWorkersFileRefused(project(text), [["list"], ["inspect", "a"], ["add", "ghcr.io/acme/w:1", "--name", "b", "--no-pull"], ["remove", "a"]], message);
}

describe("a number where iii expects text (#3): refused in one line naming the field, never re-stringified", () => {
  const cases: [string, string, RegExp][] = [
    ["an octal-looking command item", "    command: [chmod, 0755, /x]\n", /workers\.a\.command\[1\]: 0755 reads as the number 755; quote it \("0755"\) to keep it as written \[StateFileCorrupt\]$/],
    ["a version", "    env: {VERSION: 1.10}\n", /workers\.a\.env\.VERSION: 1\.10 reads as the number 1\.1; quote it \("1\.10"\)/],
    ["a 20-digit id", "    env: {ID: 12345678901234567890}\n", /workers\.a\.env\.ID: 12345678901234567890 reads as the number 12345678901234567000; quote it/],
    ["hex", "    env: {HEX: 0x1F}\n", /workers\.a\.env\.HEX: 0x1F reads as the number 31; quote it/],
    ["a key", "    env: {0755: x}\n", /workers\.a\.env: the key 0755 reads as the number 755; quote it/],
  ];
  for (const [what, line, message] of cases) {
    it(what, async () => refusedEverywhere(`workers:\n  a:\n    image: ghcr.io/acme/a:1\n${line}`, message));
  }

  it("numbers written as their value, and numbers where numbers belong, still load", async () => {
    const { cwd, env } = project(
      "workers:\n  a:\n    image: ghcr.io/acme/a:1\n    command: [sleep, 30]\n    env: {PORT: 8080, QUOTED: \"0755\"}\n    resources: {cpus: 0.50, pids: 0x100}\n    network: {hostPorts: [05432]}\n",
    );
    const run = await runWorkerCli(["inspect", "a"], { cwd, env });
    expect(run.code, run.stderr).toBe(0);
    const [{ spec: s }] = JSON.parse(run.stdout) as [{ spec: { command: string[]; env: Record<string, string>; resources: Record<string, unknown>; network: { hostPorts: number[] } } }];
    expect(s.command).toEqual(["sleep", "30"]);
    expect(s.env).toEqual({ PORT: "8080", QUOTED: "0755" });
    expect(s.resources).toEqual({ cpus: "0.5", pids: 256 });
    expect(s.network.hostPorts).toEqual([5432]);
  });
});

describe("add and remove leave the entries they did not touch as written (#4)", () => {
  it("a flow list keeps its spacing, a hex port its case", async () => {
    const entry = "  a:\n    image: ghcr.io/acme/a:1\n    command: [sh, -c, \"exit 0\"]\n    resources: {cpus: 0.50}\n    network: {hostPorts: [0x1F90]}\n";
    const { cwd, path, env } = project(`workers:\n${entry}`);
    const add = await runWorkerCli(["add", "ghcr.io/acme/b:1", "--name", "b", "--no-pull"], { cwd, env });
    expect(add.code, add.stderr).toBe(0);
    expect(readFileSync(path, "utf8")).toContain(entry);
    const remove = await runWorkerCli(["remove", "b"], { cwd, env });
    expect(remove.code, remove.stderr).toBe(0);
    expect(readFileSync(path, "utf8")).toBe(`workers:\n${entry}`);
  });
});

describe("a file with a byte order mark and CRLF line ends keeps both (#5)", () => {
  it("through add and remove", async () => {
    const original = "\uFEFF# mine\r\nworkers:\r\n  a:\r\n    image: ghcr.io/acme/a:1 # pinned\r\n";
    const { cwd, path, env } = project(original);
    const add = await runWorkerCli(["add", "ghcr.io/acme/b:1", "--name", "b", "--no-pull"], { cwd, env });
    expect(add.code, add.stderr).toBe(0);
    const added = readFileSync(path);
    expect([...added.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    const text = added.toString("utf8");
    expect(text.startsWith(original)).toBe(true);
    expect(text).toContain("  b:\r\n");
    expect(text.replace(/\r\n/g, "")).not.toContain("\n");
    const remove = await runWorkerCli(["remove", "b"], { cwd, env });
    expect(remove.code, remove.stderr).toBe(0);
    expect(readFileSync(path, "utf8")).toBe(original);
  });

  it("an LF file without a BOM stays so", async () => {
    const { cwd, path, env } = project("workers:\n  a:\n    image: ghcr.io/acme/a:1\n");
    expect((await runWorkerCli(["add", "ghcr.io/acme/b:1", "--name", "b", "--no-pull"], { cwd, env })).code).toBe(0);
    const bytes = readFileSync(path);
    expect(bytes[0]).toBe("w".charCodeAt(0));
    expect(bytes.includes("\r")).toBe(false);
  });
});

describe("an unknown YAML tag is refused like an unknown key (#6)", () => {
  it("!!js/function", async () =>
    refusedEverywhere(
      'workers:\n  a:\n    image: !!js/function "x"\n',
      /iii\.workers\.yaml holds YAML iii does not understand \(line 3, column 12\): Unresolved tag: tag:yaml\.org,2002:js\/function \[StateFileCorrupt\]$/,
    ));
  it("a local tag", async () => refusedEverywhere("workers:\n  a:\n    image: !mine x\n", /\(line 3, column 12\): Unresolved tag: !mine \[StateFileCorrupt\]$/));
});

describe("VM-only fields on a wasm: worker (#7): the loader refuses what add refuses", () => {
  const fields: [string, string][] = [
    ["capabilities", "    capabilities: {add: [ALL]}\n"],
    ["ports", "    ports: ['8080:80']\n"],
    ["resources.pids", "    resources: {pids: 64}\n"],
    ["resources.cpus", "    resources: {cpus: 1}\n"],
    ["resources.disk", "    resources: {disk: 1Gi}\n"],
    ["network.mode", "    network: {mode: none}\n"],
    ["network.allow", "    network: {allow: [example.org]}\n"],
    ["network.hostPorts", "    network: {hostPorts: [5432]}\n"],
  ];
  for (const [field, line] of fields) {
    it(field, async () =>
      refusedEverywhere(
        `workers:\n  a:\n    image: wasm:/w/m.wasm\n${line}`,
        new RegExp(`workers\\.a\\.${field.replace(".", "\\.")}: applies only to a VM worker; a wasm: worker would ignore it \\(remove it\\) \\[StateFileCorrupt\\]$`),
      ));
  }

  it("what add writes for a wasm: worker (empty lists, memory, wasm settings) loads; add refuses the same fields", async () => {
    const { cwd, env } = project("workers: {}\n");
    const wasm = wasmFile(cwd);
    const ok = await runWorkerCli(["add", `wasm:${wasm}`, "--name", "w", "--memory", "32Mi", "--max-execution-ms", "1000"], { cwd, env });
    expect(ok.code, ok.stderr).toBe(0);
    const list = await runWorkerCli(["list"], { cwd, env });
    expect(list.code, list.stderr).toBe(0);
    const refused = await runWorkerCli(["add", `wasm:${wasm}`, "--name", "v", "--pids", "64"], { cwd, env });
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toMatch(/do not apply to a WASM worker.*\[NotApplicable\]$/);
  });
});
