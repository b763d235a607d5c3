import { appendFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { LogTimesWriter, logTimesPath, readTimedLines } from "./log-times.js";

const dir = mkdtempSync(join(tmpdir(), "iii-log-times-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("records each chunk's offset, gives a line the time of the chunk it starts in, and rotates with the log", async () => {
  const log = join(dir, "stdout.log");
  writeFileSync(log, "old\n"); // written before the times existed
  const writer = new LogTimesWriter(log);
  const append = (text: string, ms: number) => {
    writer.record(Buffer.byteLength(text), ms);
    appendFileSync(log, text);
  };
  append("a", 1000);
  append("b\nc\n", 2000);
  append("d\n", 3000);
  expect(readFileSync(logTimesPath(log), "utf8")).toBe("4 1000\n5 2000\n9 3000\n");
  const lines = await readTimedLines(log);
  expect(lines.map((l) => [l.line.toString(), l.ms])).toEqual([
    ["old\n", 1000], // before the first entry: the first known time
    ["ab\n", 1000],
    ["c\n", 2000],
    ["d\n", 3000],
  ]);
  renameSync(log, `${log}.1`);
  writer.rotate();
  append("e\n", 4000);
  writer.close();
  expect(readFileSync(`${logTimesPath(log)}.1`, "utf8")).toBe("4 1000\n5 2000\n9 3000\n");
  expect((await readTimedLines(log)).map((l) => [l.line.toString(), l.ms])).toEqual([["e\n", 4000]]);
});

it("a log without times takes its modification time; a missing log has no lines", async () => {
  const log = join(dir, "wasm.log");
  writeFileSync(log, "x\ny");
  const lines = await readTimedLines(log);
  expect(lines.map((l) => l.line.toString())).toEqual(["x\n", "y"]);
  expect(lines[0]!.ms).toBeGreaterThan(Date.now() - 60_000);
  expect(await readTimedLines(join(dir, "none.log"))).toEqual([]);
});
