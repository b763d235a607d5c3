import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { workerOnPath } from "../src/locate-worker.js";

let dir: string;
let cwd: string;

function plant(at: string): string {
  mkdirSync(at, { recursive: true });
  const path = join(at, "iii-worker");
  writeFileSync(path, "#!/bin/sh\necho planted\n");
  chmodSync(path, 0o755);
  return path;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-engine-path-"));
  cwd = process.cwd();
  // A cloned project that carries its own iii-worker at its top and in bin/.
  process.chdir(dir);
  plant(dir);
  plant(join(dir, "bin"));
});
afterAll(() => {
  process.chdir(cwd);
  rmSync(dir, { recursive: true, force: true });
});

describe("iii-worker on PATH", () => {
  it("never takes one from the current directory through an empty or relative PATH entry", () => {
    for (const PATH of [":", ".", "bin", "./bin", ":/nonexistent", "/nonexistent:", "/nonexistent::/also-missing"]) {
      expect(workerOnPath({ PATH }), PATH).toBeUndefined();
    }
  });

  it("finds one in an absolute entry, after relative ones", () => {
    const real = plant(join(dir, "installed", "bin"));
    expect(workerOnPath({ PATH: `.:bin:${join(dir, "installed", "bin")}` })).toBe(real);
  });
});
