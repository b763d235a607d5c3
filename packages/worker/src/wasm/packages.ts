import { existsSync, readFileSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);

/** The root directory and version of an installed package (its exports map need not expose package.json). */
export function packageInfo(name: string): { dir: string; version: string } | undefined {
  let dir: string;
  try {
    dir = dirname(require.resolve(name));
  } catch {
    return undefined;
  }
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, "utf8")) as { name?: string; version: string };
      if (pkg.name === name) return { dir, version: pkg.version };
    }
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** `<ancestor>/node_modules/<name>` as Node's resolver finds it from `fromDir` (the link, not its target). */
function findInstalled(name: string, fromDir: string): string | undefined {
  let dir = fromDir;
  for (;;) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The directories of a package and of every dependency it needs at run time, both as linked (node_modules/<name>,
 * which the resolver reads) and as their real paths, for the runner's fs read list.
 */
export function packageClosure(name: string, fromDir: string = dirname(fileURLToPath(import.meta.url)), seen = new Set<string>()): string[] {
  const linked = findInstalled(name, fromDir);
  if (!linked) return [...seen];
  const real = realpathSync(linked);
  // every link the resolver may read counts, also a second link to a package already walked
  seen.add(linked);
  if (seen.has(real)) return [...seen];
  seen.add(real);
  const pkg = JSON.parse(readFileSync(join(real, "package.json"), "utf8")) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
  // optional ones too where installed: native bindings come that way (oxc's, which jco loads)
  for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) packageClosure(dep, real, seen);
  return [...seen];
}

/**
 * The read roots for a package closure: every path inside a `node_modules` directory becomes that directory (the
 * links there are the package's own dependencies, all in the closure anyway). Fewer, disjoint entries also keep
 * clear of Node 24's permission model refusing a directory it lists exactly when a longer sibling with the same
 * prefix is listed too (`…/@opentelemetry/api` beside `…/@opentelemetry/api-logs`: `stat` of the first is denied).
 */
export function readRoots(paths: string[]): string[] {
  const roots = new Set<string>();
  for (const path of paths) {
    const i = path.lastIndexOf("/node_modules/");
    roots.add(i >= 0 ? path.slice(0, i + "/node_modules".length) : path);
  }
  return [...roots];
}
