import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { isIiiError } from "../errors.js";
import { DevProjectError } from "./errors.js";
import { detectProject, INSTALL_INPUTS } from "./project.js";

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function project(files: Record<string, string>, name = "proj"): Promise<string> {
  const parent = await mkdtemp(join(tmpdir(), "iii-dev-project-"));
  dirs.push(parent);
  const dir = join(parent, name);
  await mkdir(dir);
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  return dir;
}

async function failure(dir: string): Promise<DevProjectError> {
  const error = await detectProject(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DevProjectError);
  return error as DevProjectError;
}

const pkg = (content: object): string => JSON.stringify(content);

describe("detectProject: iii.worker.yaml", () => {
  it("reads the hello-worker example's manifest", async () => {
    const here = dirname(fileURLToPath(import.meta.url));
    const dir = resolve(here, "../../../../examples/hello-worker");
    const result = await detectProject(dir);
    expect(result).toMatchObject({
      dir,
      name: "hello-worker",
      language: "node",
      baseImage: "node",
      packageManager: "npm",
      scripts: { install: "npm ci", start: "node src/index.js" },
      resources: { cpus: 1, memoryBytes: 512 * 2 ** 20 },
      detectedFrom: "iii.worker.yaml",
    });
    expect(result.installInputs).toEqual(INSTALL_INPUTS.node);
  });

  it("reads the py-worker example's manifest (stdlib only: no install step)", async () => {
    const here = dirname(fileURLToPath(import.meta.url));
    const result = await detectProject(resolve(here, "../../../../examples/py-worker"));
    expect(result).toMatchObject({ name: "py-worker", language: "python", baseImage: "python", packageManager: "pip" });
    expect(result.scripts).toEqual({ start: "python3 -u main.py" });
  });

  it("takes every field from the manifest over package.json", async () => {
    const dir = await project({
      "iii.worker.yaml": [
        "name: image-resize",
        "runtime: { language: typescript, packageManager: pnpm, entry: src/main.ts }",
        "scripts: { setup: 'apt-get install -y vips', install: 'pnpm i', start: 'node --watch src/main.ts' }",
        "env: { LOG_LEVEL: debug, RETRIES: 3, VERBOSE: true }",
        "resources: { cpus: 500m, memory: 1Gi, disk: 20Gi }",
      ].join("\n"),
      "package.json": pkg({ scripts: { start: "node other.js" } }),
      "package-lock.json": "{}",
    });
    expect(await detectProject(dir)).toMatchObject({
      name: "image-resize",
      language: "node",
      packageManager: "pnpm",
      scripts: { setup: "apt-get install -y vips", install: "pnpm i", start: "node --watch src/main.ts" },
      env: { LOG_LEVEL: "debug", RETRIES: "3", VERBOSE: "true" },
      resources: { cpus: 0.5, memoryBytes: 2 ** 30, diskBytes: 20 * 2 ** 30 },
    });
  });

  it("works without a name (the directory's) and infers what the manifest leaves out", async () => {
    const dir = await project(
      {
        "iii.worker.yaml": "runtime:\n  package_manager: npm\n",
        "package.json": pkg({ scripts: { start: "node server.js" } }),
        "package-lock.json": "{}",
      },
      "my-worker",
    );
    expect(await detectProject(dir)).toMatchObject({
      name: "my-worker",
      language: "node",
      scripts: { install: "npm ci", start: "npm start" },
      detectedFrom: "iii.worker.yaml",
    });
  });

  it("an empty manifest still works, and an entry gives the start command", async () => {
    const dir = await project({ "iii.worker.yaml": "", "package.json": pkg({ main: "lib/x.js" }) });
    expect((await detectProject(dir)).scripts.start).toBe("node lib/x.js");
    const withEntry = await project({ "iii.worker.yaml": "runtime: {language: node, entry: 'my app.js'}" });
    expect((await detectProject(withEntry)).scripts).toEqual({ start: "node 'my app.js'" });
  });

  it("an explicit empty install script means no install step", async () => {
    const dir = await project({ "iii.worker.yaml": "scripts: {install: '', start: node a.js}", "package.json": "{}" });
    expect((await detectProject(dir)).scripts).toEqual({ start: "node a.js" });
  });

  it("rejects bad manifests with a message naming the field", async () => {
    const cases: Array<[string, RegExp]> = [
      ["name: [1\n", /not valid YAML/],
      ["- a\n- b\n", /must be a mapping/],
      ["runtime: {language: rust}", /runtime.language "rust" is not supported/],
      ["runtime: {language: node, packageManager: cargo}", /packageManager "cargo"/],
      ["scripts: {start: [node]}", /scripts.start must be a string/],
      ["env: {'BAD-KEY': x}", /env key "BAD-KEY"/],
      ["env: {A: {b: 1}}", /env.A must be a string/],
    ];
    for (const [text, message] of cases) {
      const error = await failure(await project({ "iii.worker.yaml": text, "package.json": "{}" }));
      expect(error.message).toMatch(message);
      expect(error.code).toBe("InvalidOption");
    }
  });

  it("rejects resources that are not Kubernetes quantities, loudly", async () => {
    for (const [text, message] of [
      ["resources: {memory: 2048}", /resources.memory 2048 has no unit; write a Kubernetes quantity such as "2048Mi"/],
      ["resources: {memory: 1.5Mx}", /invalid memory "1.5Mx"/],
      ["resources: {cpus: 0}", /invalid cpus "0"/],
      ["resources: {disk: 20}", /resources.disk 20 has no unit; write a Kubernetes quantity such as "20Gi"/],
      ["resources: {disk: 1Mi}", /invalid disk "1Mi": must be at least 64Mi/],
    ] as const) {
      const dir = await project({ "iii.worker.yaml": text, "package.json": "{}" });
      const error = await detectProject(dir).catch((e: unknown) => e);
      expect(isIiiError(error, "InvalidQuantity")).toBe(true);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toContain("iii.worker.yaml");
    }
  });

  it("needs a language when there is nothing to infer it from", async () => {
    const error = await failure(await project({ "iii.worker.yaml": "scripts: {start: ./run}" }));
    expect(error.problem).toBe("NoProject");
    expect(error.missing).toEqual(["runtime.language"]);
  });
});

describe("detectProject: package.json", () => {
  it.each([
    ["package-lock.json", "npm", "npm ci", "npm start", undefined],
    ["npm-shrinkwrap.json", "npm", "npm ci", "npm start", undefined],
    ["pnpm-lock.yaml", "pnpm", "pnpm install --frozen-lockfile", "pnpm start", "corepack enable pnpm"],
    ["yarn.lock", "yarn", "yarn install --frozen-lockfile", "yarn start", "corepack enable yarn"],
    ["bun.lockb", "bun", "bun install --frozen-lockfile", "bun run start", "npm install --global bun"],
    ["bun.lock", "bun", "bun install --frozen-lockfile", "bun run start", "npm install --global bun"],
  ])("%s → %s", async (lockfile, manager, install, start, setup) => {
    const dir = await project({ "package.json": pkg({ scripts: { start: "node ." } }), [lockfile]: "" });
    const result = await detectProject(dir);
    expect(result).toMatchObject({ language: "node", packageManager: manager, detectedFrom: "package.json" });
    expect(result.scripts.install).toBe(install);
    expect(result.scripts.start).toBe(start);
    if (setup) expect(result.scripts.setup).toContain(setup);
    else expect(result.scripts.setup).toBeUndefined();
    expect(result.installInputs).toContain(lockfile);
  });

  it("without a lockfile installs unfrozen; yarn berry uses --immutable", async () => {
    const npm = await project({ "package.json": pkg({ main: "a.js" }) });
    expect(await detectProject(npm)).toMatchObject({ packageManager: "npm", scripts: { install: "npm install" } });
    const berry = await project({ "package.json": pkg({ main: "a.js" }), "yarn.lock": "", ".yarnrc.yml": "" });
    expect((await detectProject(berry)).scripts.install).toBe("yarn install --immutable");
  });

  it("honours corepack's packageManager field over lockfile guessing", async () => {
    const dir = await project({ "package.json": pkg({ packageManager: "pnpm@9.12.0", main: "a.js" }) });
    expect(await detectProject(dir)).toMatchObject({ packageManager: "pnpm", scripts: { install: "pnpm install" } });
  });

  it("starts with node <main>, else node index.js", async () => {
    expect((await detectProject(await project({ "package.json": pkg({ main: "dist/server.js" }) }))).scripts.start).toBe(
      "node dist/server.js",
    );
    expect((await detectProject(await project({ "package.json": "{}", "index.js": "" }))).scripts.start).toBe(
      "node index.js",
    );
  });

  it("throws NoStartCommand naming what is missing instead of guessing", async () => {
    const error = await failure(await project({ "package.json": pkg({ scripts: { build: "tsc" } }) }));
    expect(error.problem).toBe("NoStartCommand");
    expect(error.missing).toEqual([
      "scripts.start in iii.worker.yaml",
      "runtime.entry in iii.worker.yaml",
      'a "start" script in package.json',
      '"main" in package.json',
      "index.js",
    ]);
    expect(error.message).toContain("cannot tell how to start the node project");
  });

  it("reports a broken package.json", async () => {
    const error = await failure(await project({ "package.json": "{nope" }));
    expect(error.problem).toBe("InvalidManifest");
    expect(error.message).toContain("package.json");
  });
});

describe("detectProject: python", () => {
  it("requirements.txt + main.py: venv at .venv, pip install -r, python main.py", async () => {
    const dir = await project({ "requirements.txt": "requests\n", "main.py": "" });
    expect(await detectProject(dir)).toMatchObject({
      language: "python",
      baseImage: "python",
      packageManager: "pip",
      detectedFrom: "requirements.txt",
      scripts: {
        install: "python3 -m venv .venv && .venv/bin/python -m pip install -r requirements.txt",
        start: ".venv/bin/python main.py",
      },
      installInputs: INSTALL_INPUTS.python,
    });
  });

  it("pyproject.toml with a package that has __main__.py: editable install, python -m <package>", async () => {
    const dir = await project({
      "pyproject.toml": '[project]\nname = "my-worker"\nversion = "0.1.0"\n',
      "src/my_worker/__main__.py": "",
    });
    expect((await detectProject(dir)).scripts).toEqual({
      install: "python3 -m venv .venv && .venv/bin/python -m pip install -e .",
      start: ".venv/bin/python -m my_worker",
    });
  });

  it("pyproject.toml with one console script runs it from the venv", async () => {
    const dir = await project({
      "pyproject.toml": '[project]\nname = "w"\n\n[project.scripts]\nw-serve = "w.cli:main"\n',
      "requirements.txt": "",
    });
    expect((await detectProject(dir)).scripts.start).toBe(".venv/bin/w-serve");
  });

  it("a manifest entry is a module or a file", async () => {
    const module = await project({ "iii.worker.yaml": "runtime: {language: python, entry: app.main}", "requirements.txt": "" });
    expect((await detectProject(module)).scripts.start).toBe(".venv/bin/python -m app.main");
    const file = await project({ "iii.worker.yaml": "runtime: {language: python, entry: bin/run.py}" });
    expect((await detectProject(file)).scripts.start).toBe(".venv/bin/python bin/run.py");
  });

  it("never falls back to a guessed `python3 -m iii`", async () => {
    const error = await failure(
      await project({ "pyproject.toml": '[project]\nname = "w"\n[project.scripts]\na = "w:a"\nb = "w:b"\n' }),
    );
    expect(error.problem).toBe("NoStartCommand");
    expect(error.missing).toContain("exactly one [project.scripts] entry in pyproject.toml (found a, b)");
    expect(error.missing).toContain("w/__main__.py");
    expect(error.missing).toContain("main.py");
  });

  it("a tool-only pyproject.toml is not pip-installed", async () => {
    const dir = await project({ "pyproject.toml": "[tool.ruff]\nline-length = 100\n", "main.py": "" });
    expect((await detectProject(dir)).scripts.install).toBe("python3 -m venv .venv");
  });
});

describe("detectProject: nothing to run", () => {
  it("an empty directory is NoProject", async () => {
    const dir = await project({});
    const error = await failure(dir);
    expect(error.problem).toBe("NoProject");
    expect(error.message).toContain(basename(dir));
  });

  it("a missing directory is NoProject", async () => {
    const error = await failure(join(tmpdir(), "iii-dev-does-not-exist-" + process.pid));
    expect(error.message).toMatch(/is not a directory$/);
  });
});
