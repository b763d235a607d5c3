import { stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { DevProjectError } from "./errors.js";
import {
  MANIFEST_FILE,
  parseDevManifest,
  type DevLanguage,
  type DevManifest,
  type DevPackageManager,
  type DevResources,
  type NodePackageManager,
} from "./manifest.js";
import { isProjectFile, readProjectText } from "./project-file.js";
import { moduleNameFor, parsePyproject, type PyprojectInfo } from "./pyproject.js";
import { shellQuote } from "./shell.js";

/** Lockfiles per package manager, in the order they are looked for. */
export const NODE_LOCKFILES: Readonly<Record<NodePackageManager, readonly string[]>> = {
  pnpm: ["pnpm-lock.yaml"],
  yarn: ["yarn.lock"],
  bun: ["bun.lock", "bun.lockb"],
  npm: ["package-lock.json", "npm-shrinkwrap.json"],
};

/**
 * Files at the project root whose change means the dependencies must be installed again. A file that does
 * not exist yet still counts: creating a lockfile changes what install does.
 */
export const INSTALL_INPUTS: Readonly<Record<DevLanguage, readonly string[]>> = {
  node: [MANIFEST_FILE, "package.json", ...Object.values(NODE_LOCKFILES).flat()],
  python: [MANIFEST_FILE, "pyproject.toml", "requirements.txt"],
};

/** The Python virtualenv, relative to the workspace (`/workspace/.venv` in the guest). */
export const VENV_DIR = ".venv";

export interface DevScripts {
  /** Once before install (e.g. enable a package manager); cached together with install. */
  setup?: string;
  install?: string;
  start: string;
}

export interface DevProject {
  /** Absolute host path of the project (what gets mounted at /workspace). */
  dir: string;
  /** `name` from iii.worker.yaml, else the directory's name. */
  name: string;
  language: DevLanguage;
  /** The dev base image: the node or python image of the images issue. */
  baseImage: DevLanguage;
  packageManager: DevPackageManager;
  scripts: DevScripts;
  /** From iii.worker.yaml `env`. */
  env: Record<string, string>;
  resources: DevResources;
  /** Root-relative paths whose change must re-run install (see INSTALL_INPUTS). */
  installInputs: string[];
  /** Which file decided the project's shape. */
  detectedFrom: typeof MANIFEST_FILE | "package.json" | "pyproject.toml" | "requirements.txt";
}

interface PackageJson {
  name?: unknown;
  main?: unknown;
  scripts?: Record<string, unknown>;
  packageManager?: unknown;
}

/**
 * Works out how to run the project in `dir` in a dev VM: `iii.worker.yaml` first (every field optional; what
 * it leaves out is inferred), else `package.json`, else `pyproject.toml` / `requirements.txt`. Throws
 * `DevProjectError` rather than guessing a start command.
 */
export async function detectProject(dir: string): Promise<DevProject> {
  const root = resolve(dir);
  const rootStat = await stat(root).catch(() => undefined);
  if (!rootStat?.isDirectory()) {
    throw new DevProjectError("NoProject", `${root} is not a directory`);
  }
  const manifestText = await readProjectText(root, MANIFEST_FILE);
  const manifest = manifestText === undefined ? undefined : parseDevManifest(manifestText, join(root, MANIFEST_FILE));
  const packageJsonText = await readProjectText(root, "package.json");
  const pyprojectText = await readProjectText(root, "pyproject.toml");
  const hasRequirements = await isProjectFile(root, "requirements.txt");

  const language: DevLanguage | undefined =
    manifest?.runtime.language ??
    (packageJsonText !== undefined ? "node" : pyprojectText !== undefined || hasRequirements ? "python" : undefined);
  if (!language) {
    throw new DevProjectError(
      "NoProject",
      manifest
        ? `${join(root, MANIFEST_FILE)} has no runtime.language and there is no package.json, pyproject.toml or requirements.txt to infer it from`
        : `no project in ${root}: add ${MANIFEST_FILE}, package.json, pyproject.toml or requirements.txt`,
      { missing: manifest ? ["runtime.language"] : [MANIFEST_FILE, "package.json", "pyproject.toml", "requirements.txt"] },
    );
  }
  const detectedFrom: DevProject["detectedFrom"] = manifest
    ? MANIFEST_FILE
    : language === "node"
      ? "package.json"
      : pyprojectText !== undefined
        ? "pyproject.toml"
        : "requirements.txt";
  const base = {
    dir: root,
    name: manifest?.name ?? basename(root),
    language,
    baseImage: language,
    env: { ...manifest?.env },
    resources: { ...manifest?.resources },
    installInputs: [...INSTALL_INPUTS[language]],
    detectedFrom,
  };
  const inferred =
    language === "node"
      ? await inferNode(root, manifest, packageJsonText)
      : await inferPython(root, manifest, pyprojectText, hasRequirements);
  return { ...base, ...inferred };
}

/** Explicit manifest scripts win; `""` in the manifest means "no such step". */
function pick(explicit: string | undefined, inferred: string | undefined): string | undefined {
  if (explicit !== undefined) return explicit === "" ? undefined : explicit;
  return inferred;
}

function withScripts(setup: string | undefined, install: string | undefined, start: string): DevScripts {
  const scripts: DevScripts = { start };
  if (setup) scripts.setup = setup;
  if (install) scripts.install = install;
  return scripts;
}

function noStart(root: string, language: DevLanguage, missing: string[]): DevProjectError {
  return new DevProjectError(
    "NoStartCommand",
    `cannot tell how to start the ${language} project in ${root}: add scripts.start to ${MANIFEST_FILE}, or one of: ${missing.slice(1).join(", ")}`,
    { missing },
  );
}

async function inferNode(
  root: string,
  manifest: DevManifest | undefined,
  packageJsonText: string | undefined,
): Promise<Pick<DevProject, "packageManager" | "scripts">> {
  let pkg: PackageJson | undefined;
  if (packageJsonText !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(packageJsonText);
    } catch (error) {
      throw new DevProjectError("InvalidManifest", `${join(root, "package.json")}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new DevProjectError("InvalidManifest", `${join(root, "package.json")}: not an object`);
    }
    pkg = parsed as PackageJson;
  }
  const manifestManager = manifest?.runtime.packageManager;
  if (manifestManager === "pip") {
    throw new DevProjectError("InvalidManifest", `${join(root, MANIFEST_FILE)}: packageManager pip is not a node package manager`);
  }
  const lockfileOf = async (manager: NodePackageManager): Promise<string | undefined> => {
    for (const file of NODE_LOCKFILES[manager]) if (await isProjectFile(root, file)) return file;
    return undefined;
  };
  // corepack's "packageManager": "pnpm@9.12.0" field states the manager outright.
  const declared = typeof pkg?.packageManager === "string" ? pkg.packageManager.split("@")[0] : undefined;
  let manager: NodePackageManager | undefined = manifestManager;
  if (!manager && declared && declared in NODE_LOCKFILES) manager = declared as NodePackageManager;
  if (!manager) {
    for (const candidate of Object.keys(NODE_LOCKFILES) as NodePackageManager[]) {
      if (await lockfileOf(candidate)) {
        manager = candidate;
        break;
      }
    }
  }
  manager ??= "npm";
  const locked = (await lockfileOf(manager)) !== undefined;
  const yarnBerry = manager === "yarn" && (await isProjectFile(root, ".yarnrc.yml"));

  const inferredInstall =
    pkg === undefined
      ? undefined
      : {
          npm: locked ? "npm ci" : "npm install",
          pnpm: locked ? "pnpm install --frozen-lockfile" : "pnpm install",
          yarn: locked ? (yarnBerry ? "yarn install --immutable" : "yarn install --frozen-lockfile") : "yarn install",
          bun: locked ? "bun install --frozen-lockfile" : "bun install",
        }[manager];
  // The node image ships npm and corepack; pnpm and yarn come from corepack, bun from npm.
  const inferredSetup =
    pkg === undefined
      ? undefined
      : {
          npm: undefined,
          pnpm: "command -v pnpm >/dev/null 2>&1 || corepack enable pnpm",
          yarn: "command -v yarn >/dev/null 2>&1 || corepack enable yarn",
          bun: "command -v bun >/dev/null 2>&1 || npm install --global bun",
        }[manager];

  const scripts = pkg?.scripts && typeof pkg.scripts === "object" ? pkg.scripts : {};
  let inferredStart: string | undefined;
  if (manifest?.runtime.entry) inferredStart = `node ${shellQuote(manifest.runtime.entry)}`;
  else if (typeof scripts.start === "string" && scripts.start.trim() !== "") {
    inferredStart = manager === "bun" ? "bun run start" : `${manager} start`;
  } else if (typeof pkg?.main === "string" && pkg.main.trim() !== "") inferredStart = `node ${shellQuote(pkg.main.trim())}`;
  else if (await isProjectFile(root, "index.js")) inferredStart = "node index.js";

  const start = pick(manifest?.scripts.start, inferredStart);
  if (!start) {
    throw noStart(root, "node", [
      `scripts.start in ${MANIFEST_FILE}`,
      `runtime.entry in ${MANIFEST_FILE}`,
      'a "start" script in package.json',
      '"main" in package.json',
      "index.js",
    ]);
  }
  return {
    packageManager: manager,
    scripts: withScripts(pick(manifest?.scripts.setup, inferredSetup), pick(manifest?.scripts.install, inferredInstall), start),
  };
}

async function inferPython(
  root: string,
  manifest: DevManifest | undefined,
  pyprojectText: string | undefined,
  hasRequirements: boolean,
): Promise<Pick<DevProject, "packageManager" | "scripts">> {
  const manifestManager = manifest?.runtime.packageManager;
  if (manifestManager && manifestManager !== "pip") {
    throw new DevProjectError(
      "InvalidManifest",
      `${join(root, MANIFEST_FILE)}: packageManager ${manifestManager} is not a python package manager (use pip)`,
    );
  }
  const pyproject: PyprojectInfo | undefined = pyprojectText === undefined ? undefined : parsePyproject(pyprojectText);
  // Only a pyproject.toml with a [project] name is an installable package; one that only configures tools is not.
  const installable = pyproject?.name !== undefined;
  const python = `${VENV_DIR}/bin/python`;
  const installSteps = [`python3 -m venv ${VENV_DIR}`];
  if (hasRequirements) installSteps.push(`${python} -m pip install -r requirements.txt`);
  if (installable) installSteps.push(`${python} -m pip install -e .`);

  let inferredStart: string | undefined;
  const entry = manifest?.runtime.entry;
  if (entry) {
    inferredStart = /\.py$|\//.test(entry) ? `${python} ${shellQuote(entry)}` : `${python} -m ${shellQuote(entry)}`;
  } else if (installable && pyproject.scripts.length === 1) {
    inferredStart = `${VENV_DIR}/bin/${shellQuote(pyproject.scripts[0]!)}`;
  } else if (installable) {
    const module = moduleNameFor(pyproject.name!);
    for (const candidate of [join(module, "__main__.py"), join("src", module, "__main__.py")]) {
      if (await isProjectFile(root, candidate)) {
        inferredStart = `${python} -m ${module}`;
        break;
      }
    }
  }
  if (!inferredStart && (await isProjectFile(root, "main.py"))) inferredStart = `${python} main.py`;

  const start = pick(manifest?.scripts.start, inferredStart);
  if (!start) {
    const scriptsHint =
      pyproject && pyproject.scripts.length > 1
        ? `exactly one [project.scripts] entry in pyproject.toml (found ${pyproject.scripts.join(", ")})`
        : "a [project.scripts] entry in pyproject.toml";
    throw noStart(root, "python", [
      `scripts.start in ${MANIFEST_FILE}`,
      `runtime.entry in ${MANIFEST_FILE}`,
      scriptsHint,
      installable ? `${moduleNameFor(pyproject.name!)}/__main__.py` : "a [project] name in pyproject.toml with <package>/__main__.py",
      "main.py",
    ]);
  }
  return {
    packageManager: "pip",
    scripts: withScripts(
      pick(manifest?.scripts.setup, undefined),
      pick(manifest?.scripts.install, installSteps.join(" && ")),
      start,
    ),
  };
}
