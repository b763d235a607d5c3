// review rev6g: a worker's writable share that holds ANOTHER project (`-m ~/code:/code`, or a monorepo's nested
// project under `iii worker dev`) let the guest rewrite that project's iii.workers.yaml (protectedPaths covered
// only its own project's), and that project's next `start` honoured it: reproduced with `mounts:
// ["<host dir>:/stolen"]`, and the victim worker read the host directory. Every iii.workers.yaml (and lock) in a
// writable share is now read-only to the guest (@iii/filesystem protectedNames, from the supervisor).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";
import { busyboxRootfs, Project, vmSkipReason } from "./harness.js";

const skip = vmSkipReason();
if (skip) console.warn(`[vm] skipping rev6g nested workers-file VM test: ${skip}`);

describe.skipIf(!!skip)("a writable share holding another project: its iii.workers.yaml is read-only to the guest (vm)", () => {
  const p = new Project();
  let rootfs: string;
  beforeAll(() => {
    rootfs = busyboxRootfs();
  });
  afterAll(() => p.dispose());

  it("the guest's rewrite, removal, replacement and new workers files are refused; the rest of the share is writable", async () => {
    const code = join(p.dir, "code");
    const victimDir = join(code, "p1");
    mkdirSync(victimDir, { recursive: true });
    const secret = join(p.dir, "secret");
    mkdirSync(secret);
    writeFileSync(join(secret, "s.txt"), "host secret\n");
    // The victim project, made by the real CLI in its own directory (same III_HOME).
    const victim = await runWorkerCli(["add", `dir:${rootfs}`, "--name", "victim", "--", "sleep", "100000"], { cwd: victimDir, env: p.env });
    expect(victim.code, victim.stderr).toBe(0);
    const workersFile = join(victimDir, "iii.workers.yaml");
    const original = readFileSync(workersFile, "utf8");
    expect(original).toContain("mounts: []");

    const add = await p.cli(["add", `dir:${rootfs}`, "--name", "attacker", "-m", `${code}:/code`, "--", "sleep", "100000"]);
    expect(add.code, add.stderr).toBe(0);
    const start = await p.cli(["start", "attacker"]);
    expect(start.code, start.stderr + p.diagnostics("attacker")).toBe(0);
    const attempts = [
      `sed -i 's#    mounts: \\[\\]#    mounts: ["${secret}:/stolen"]#' /code/p1/iii.workers.yaml`,
      `echo 'workers: {victim: {image: "dir:${rootfs}", mounts: ["${secret}:/stolen"]}}' > /code/p1/iii.workers.yaml`,
      "rm /code/p1/iii.workers.yaml",
      "echo x > /code/p1/new.yaml && mv /code/p1/new.yaml /code/p1/iii.workers.yaml",
      "rm -f /code/p1/iii.workers.yaml.lock && ln -s /etc/passwd /code/p1/iii.workers.yaml.lock",
      "mkdir -p /code/p3 && echo 'workers: {}' > /code/p3/iii.workers.yaml",
    ];
    const script = `${attempts.map((a, i) => `(${a}) 2>/tmp/e${i}; echo "attempt${i}=$? $(cat /tmp/e${i} | head -1)"`).join("; ")}; echo mine > /code/p1/notes.txt && echo own=ok`;
    const run = await p.cli(["exec", "attacker", "--", "sh", "-c", script]);
    expect(run.code, run.stderr).toBe(0);
    for (let i = 0; i < attempts.length; i++) {
      const line = new RegExp(`attempt${i}=(\\d+)(.*)`).exec(run.stdout);
      expect(Number(line?.[1]), `${attempts[i]}: ${line?.[0]}`).not.toBe(0);
      expect(line?.[2], attempts[i]).toMatch(/Read-only file system/);
    }
    expect(run.stdout).toContain("own=ok");
    expect(readFileSync(workersFile, "utf8")).toBe(original);
    expect(readFileSync(join(victimDir, "notes.txt"), "utf8")).toBe("mine\n");
    expect((await p.cli(["stop", "attacker", "--timeout", "1"])).code).toBe(0);
  }, 180_000);
});
