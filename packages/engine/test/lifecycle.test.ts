import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startManagedWorkers, stopManagedWorkers } from "../src/index.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "iii-engine-lifecycle-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("startManagedWorkers/stopManagedWorkers run start-all --engine-url and stop-all", async () => {
  const log = join(dir, "calls");
  const bin = join(dir, "iii-worker");
  writeFileSync(bin, `#!/bin/sh\necho "$@" >> ${log}\n`);
  chmodSync(bin, 0o755);
  const env = { ...process.env, III_WORKER_BIN: bin };
  expect(await startManagedWorkers("ws://127.0.0.1:5000", { env })).toBe(0);
  expect(await stopManagedWorkers({ env })).toBe(0);
  expect(readFileSync(log, "utf8")).toBe("start-all --engine-url ws://127.0.0.1:5000\nstop-all\n");
});
