#!/usr/bin/env node
// Fails when a published package's source changed without a changeset naming that package.
//
//   node scripts/check-changesets.mjs [--base REF] [--repo DIR]
//
// "Source" is a package's src/ (tests under it excepted) and its package.json; the packages are the public ones
// under packages/. Which changes count:
//
// - On a branch: everything since the merge base of HEAD with the base (--base, else $III_CHANGESET_BASE, else
//   origin/main, else main), committed or not. Each changed package needs a changeset added or edited in that
//   range that names it, unless its version changed there (a release: `changeset version` deletes the
//   changesets it applies).
// - Where that range is empty (HEAD is the base: CI's clone of main, where origin/main is HEAD itself) or no
//   base exists: everything since each package's last release, i.e. the last commit that changed the
//   "version" line of its package.json (its first commit if none). Each changed package needs a pending
//   changeset (any in .changeset/) that names it.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

function arg(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const repo = resolve(arg("--repo") ?? join(import.meta.dirname, ".."));
// safe.directory: under sudo (CI runs the tests as root in the runner's checkout) git refuses another user's repo.
const git = (...args) => execFileSync("git", ["-c", `safe.directory=${repo}`, ...args], { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
const tryGit = (...args) => {
  try {
    return git(...args);
  } catch {
    return undefined;
  }
};
const lines = (text) => (text ? text.split("\n").filter(Boolean) : []);

/** Public packages under packages/: directory → name. */
const packages = new Map();
for (const dir of readdirSync(join(repo, "packages"), { withFileTypes: true })) {
  const file = join(repo, "packages", dir.name, "package.json");
  if (!dir.isDirectory() || !existsSync(file)) continue;
  const pkg = JSON.parse(readFileSync(file, "utf8"));
  if (!pkg.private) packages.set(`packages/${dir.name}`, pkg.name);
}

function packageOf(path) {
  const m = /^(packages\/[^/]+)\/(.+)$/.exec(path);
  if (!m || !packages.has(m[1])) return undefined;
  const inside = m[2];
  if (inside === "package.json" || (inside.startsWith("src/") && !/\.test\.ts$/.test(inside))) return packages.get(m[1]);
  return undefined;
}

/** Package names a changeset's front matter names. */
function namedBy(path) {
  const text = existsSync(join(repo, path)) ? readFileSync(join(repo, path), "utf8") : "";
  const front = /^---\n([\s\S]*?)\n---/.exec(text)?.[1] ?? "";
  return new Set(lines(front).map((l) => /^\s*["']?([^"':]+)["']?\s*:/.exec(l)?.[1]?.trim()).filter(Boolean));
}
const isChangeset = (path) => /^\.changeset\/[^/]+\.md$/.test(path) && path !== ".changeset/README.md";

/** Files changed since `since`: committed, staged, unstaged and untracked. */
function changedSince(since, paths = []) {
  return new Set([...lines(git("diff", "--name-only", since, "--", ...paths)), ...lines(git("ls-files", "--others", "--exclude-standard", "--", ...paths))]);
}

/** Whether the package's version differs between `since` and the working tree (a release happened). */
function versionChanged(since, dir) {
  const before = tryGit("show", `${since}:${dir}/package.json`);
  return before !== undefined && JSON.parse(before).version !== JSON.parse(readFileSync(join(repo, dir, "package.json"), "utf8")).version;
}

const versionAt = (commit, dir) => {
  const text = tryGit("show", `${commit}:${dir}/package.json`);
  return text === undefined ? undefined : JSON.parse(text).version;
};

/** The newest commit that changed the package's version (or created its package.json). */
function lastRelease(dir) {
  const commits = lines(git("log", "--format=%H", "--", `${dir}/package.json`));
  return commits.find((c) => versionAt(c, dir) !== versionAt(`${c}^`, dir)) ?? commits.at(-1);
}

const problems = [];
let summary;
const baseRef = arg("--base") || process.env.III_CHANGESET_BASE || ["origin/main", "main"].find((r) => tryGit("rev-parse", "--verify", "--quiet", `${r}^{commit}`));
const head = git("rev-parse", "HEAD");
const mergeBase = baseRef ? tryGit("merge-base", baseRef, "HEAD") : undefined;
if (baseRef && !mergeBase) {
  console.error(`changesets: no merge base between ${baseRef} and HEAD (fetch the base with full history)`);
  process.exit(2);
}

if (mergeBase && mergeBase !== head) {
  const changed = changedSince(mergeBase);
  const touched = new Map();
  for (const path of changed) {
    const name = packageOf(path);
    if (name) touched.set(name, [...(touched.get(name) ?? []), path]);
  }
  const named = new Set([...changed].filter(isChangeset).flatMap((p) => [...namedBy(p)]));
  for (const [dir, name] of packages) {
    if (touched.has(name) && !named.has(name) && !versionChanged(mergeBase, dir)) problems.push([name, touched.get(name)]);
  }
  summary = `since ${baseRef} (merge base ${mergeBase.slice(0, 12)})`;
} else {
  const pending = new Set(readdirSync(join(repo, ".changeset")).map((f) => `.changeset/${f}`).filter(isChangeset).flatMap((p) => [...namedBy(p)]));
  for (const [dir, name] of packages) {
    const release = lastRelease(dir);
    const files = [...changedSince(release, [dir])].filter((p) => packageOf(p) === name);
    if (files.length > 0 && !pending.has(name)) problems.push([name, files]);
  }
  summary = `since each package's last release (${baseRef ? `HEAD is ${baseRef}` : "no base branch"})`;
}

if (problems.length > 0) {
  for (const [name, files] of problems) {
    const shown = files.slice(0, 3).join(", ") + (files.length > 3 ? `, and ${files.length - 3} more` : "");
    console.error(`changesets: ${name} changed ${summary} (${shown}) but no changeset names it: run "pnpm changeset"`);
  }
  process.exit(1);
}
console.log(`changesets: ok, every changed package has a changeset ${summary}`);
