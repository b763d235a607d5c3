import { createHash } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkHomeSafe } from "../../src/state/home-safety.js";
import { runWorkerCli } from "../helpers.js";

/**
 * Another local user (uid 65534) owning or able to write III_HOME, attacking root's CLI. Needs root (to hand
 * directories to that user).
 */
const OTHER = 65534;
const asRoot = process.getuid?.() === 0;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-home-safety-"));
  chmodSync(dir, 0o755);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function fresh(mode = 0o755, owner = 0): string {
  const path = join(dir, `d${n++}`);
  mkdirSync(path, { mode });
  chmodSync(path, mode);
  chownSync(path, owner, owner);
  return path;
}

describe.skipIf(!asRoot)("checkHomeSafe", () => {
  it("accepts a home of this user's that only it can write, under root's directories and a sticky /tmp", () => {
    expect(() => checkHomeSafe(fresh(0o700))).not.toThrow();
    expect(() => checkHomeSafe(fresh(0o755))).not.toThrow();
    expect(() => checkHomeSafe(join(fresh(0o1777), "home"))).not.toThrow();
  });

  it("checks where a missing home will be made, without making it", () => {
    const home = join(fresh(0o1777), "a", "home");
    checkHomeSafe(home);
    expect(existsSync(join(home, ".."))).toBe(false);
  });

  it("leaves a home it cannot reach (under a file) to the command's own error", () => {
    const file = join(fresh(), "a-file");
    writeFileSync(file, "");
    expect(() => checkHomeSafe(join(file, "home"))).not.toThrow();
  });

  it("refuses a home another user owns, or anyone else can write", () => {
    expect(() => checkHomeSafe(fresh(0o755, OTHER))).toThrow(/is not safe to use: .* belongs to uid 65534, not to this user \(uid 0\)/);
    expect(() => checkHomeSafe(fresh(0o777))).toThrow(/is writable by every user \(mode 0777\); chmod go-w/);
    expect(() => checkHomeSafe(fresh(0o775 | 0o000, 0))).not.toThrow(); // group root
    const group = fresh(0o770);
    chownSync(group, 0, 100);
    expect(() => checkHomeSafe(group)).toThrow(/is writable by its group \(gid 100\)/);
  });

  it("refuses a home below a directory another user owns or can write (not sticky), and a link into one", () => {
    const theirs = fresh(0o755, OTHER);
    mkdirSync(join(theirs, "home"), { mode: 0o700 });
    expect(() => checkHomeSafe(join(theirs, "home"))).toThrow(/above it belongs to uid 65534/);
    const open = fresh(0o777);
    mkdirSync(join(open, "home"), { mode: 0o700 });
    expect(() => checkHomeSafe(join(open, "home"))).toThrow(/above it is writable by other users and not sticky \(mode 0777\)/);
    const link = join(fresh(), "home");
    symlinkSync(join(theirs, "home"), link);
    expect(() => checkHomeSafe(link)).toThrow(/above it belongs to uid 65534/);
    expect(() => checkHomeSafe(join(theirs, "missing", "home"))).toThrow(/above it belongs to uid 65534/);
    expect(existsSync(join(theirs, "missing"))).toBe(false);
  });
});

describe.skipIf(!asRoot)("the CLI refuses an III_HOME another local user controls", () => {
  it("login: auth.json the other user planted would have been rewritten as theirs, holding root's password", async () => {
    const home = fresh(0o755, OTHER);
    writeFileSync(join(home, "auth.json"), "{}\n");
    chownSync(join(home, "auth.json"), OTHER, OTHER);
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      import("node:child_process").then(({ spawn }) => {
        const child = spawn(process.execPath, [join(import.meta.dirname, "../../dist/cli.js"), "login", "registry.invalid", "-u", "root", "--password-stdin", "--no-verify"], {
          cwd: dir,
          env: { ...process.env, III_HOME: home },
          stdio: ["pipe", "ignore", "pipe"],
        });
        let stderr = "";
        child.stderr.on("data", (d) => (stderr += d));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stderr }));
        child.stdin.end("root-s3cret\n");
      }, reject);
    });
    expect(run.stderr).toMatch(/^iii-worker: III_HOME .* is not safe to use: .* belongs to uid 65534, not to this user \(uid 0\) \[HomeUnwritable\]\n$/);
    expect(run.code).toBe(1);
    expect(readFileSync(join(home, "auth.json"), "utf8")).toBe("{}\n");
  });

  it("remove: a managed/<project> linked by the other user would have let root delete a directory of its choice", async () => {
    const home = fresh(0o755, OTHER);
    const project = fresh();
    const rootfs = fresh();
    const victim = fresh(0o700);
    mkdirSync(join(victim, "web"));
    writeFileSync(join(victim, "web", "data.txt"), "precious\n");
    const added = await runWorkerCli(["add", `dir:${rootfs}`, "--name", "web"], { cwd: project, env: { III_HOME: join(dir, `clean${n++}`) } });
    expect(added.code, added.stderr).toBe(0);
    const key = createHash("sha256").update(join(project, "iii.workers.yaml")).digest("hex").slice(0, 16);
    mkdirSync(join(home, "managed"));
    chownSync(join(home, "managed"), OTHER, OTHER);
    symlinkSync(victim, join(home, "managed", key));
    const run = await runWorkerCli(["remove", "web"], { cwd: project, env: { III_HOME: home } });
    expect(run.stderr).toMatch(/III_HOME .* is not safe to use: .* belongs to uid 65534.*\[HomeUnwritable\]\n$/);
    expect(readFileSync(join(victim, "web", "data.txt"), "utf8")).toBe("precious\n");
  });
});
