import { readdirSync, readFileSync } from "node:fs";
import { expect } from "vitest";
import { runWorkerCli } from "../helpers.js";

/**
 * Runs each command against a project whose iii.workers.yaml the CLI must refuse: one line on stderr matching
 * `message`, exit 1, and the file byte for byte as it was, no temp file left beside it.
 */
export async function expectWorkersFileRefused(
  project: { cwd: string; path: string; env: NodeJS.ProcessEnv },
  commands: string[][],
  message: RegExp,
): Promise<void> {
  const before = readFileSync(project.path);
  for (const args of commands) {
    const run = await runWorkerCli(args, { cwd: project.cwd, env: project.env });
    expect(run.code, `${args[0]}: ${run.stderr}`).toBe(1);
    expect(run.stderr.trim().split("\n"), args[0]).toHaveLength(1);
    expect(run.stderr.trim(), args[0]).toMatch(message);
  }
  expect(readFileSync(project.path).equals(before)).toBe(true);
  expect(readdirSync(project.cwd).filter((n) => n.endsWith(".tmp"))).toEqual([]);
}
