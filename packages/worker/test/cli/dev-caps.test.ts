import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { runWorkerCli } from "../helpers.js";

const dir = mkdtempSync(join(tmpdir(), "iii-dev-caps-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("dev --cap-add / --cap-drop: a name that is no capability is one line, before the project is looked at", async () => {
  const env = { III_HOME: join(dir, "home") };
  const add = await runWorkerCli(["dev", join(dir, "missing"), "--cap-add", "NET_ADMIN", "--cap-add", "FLY"], { cwd: dir, env });
  expect(add.code).toBe(1);
  expect(add.stderr.trim()).toBe('iii-worker: invalid --cap-add "FLY": not a Linux capability (e.g. NET_ADMIN, SYS_TIME, or ALL) [InvalidOption]');
  const drop = await runWorkerCli(["dev", join(dir, "missing"), "--cap-drop", "cap_nope"], { cwd: dir, env });
  expect(drop.stderr.trim()).toBe('iii-worker: invalid --cap-drop "cap_nope": not a Linux capability (e.g. NET_ADMIN, SYS_TIME, or ALL) [InvalidOption]');
  const help = await runWorkerCli(["dev", "--help"], { cwd: dir, env });
  expect(help.stdout).toContain("--cap-add <capability>");
  expect(help.stdout).toContain("--cap-drop <capability>");
});
