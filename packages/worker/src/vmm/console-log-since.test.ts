import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { consoleLinesSince, consoleMark } from "./console-log.js";

const dir = mkdtempSync(join(tmpdir(), "iii-console-since-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("a run's console lines: none of an earlier run's, all of its own, also after a rotation or with no file", () => {
  const path = join(dir, "console.log");
  expect(consoleLinesSince(path, consoleMark(path), 5)).toEqual([]);
  writeFileSync(path, "iii-init: workload exited with signal SIGTERM; status 143\n");
  const mark = consoleMark(path);
  expect(consoleLinesSince(path, mark, 5)).toEqual([]);
  appendFileSync(path, "\r\nkernel: this run\r\n");
  expect(consoleLinesSince(path, mark, 5)).toEqual(["kernel: this run"]);
  // rotated during the run (RotatingLog renames to .1 and starts a new file): the new file is all this run's
  renameSync(path, `${path}.1`);
  writeFileSync(path, "after rotation\n");
  expect(consoleLinesSince(path, mark, 5)).toEqual(["after rotation"]);
  // a log that did not exist when the run began
  const fresh = join(dir, "fresh.log");
  const none = consoleMark(fresh);
  writeFileSync(fresh, "first\nsecond\nthird\n");
  expect(consoleLinesSince(fresh, none, 2)).toEqual(["second", "third"]);
});
