import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { consoleTail, waitForLine } from "./console-log.js";
import { isListening } from "./qemu-vmm.js";

const dir = mkdtempSync(join(tmpdir(), "iii-console-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("waitForLine", () => {
  it("finds a line written later, across partial writes and CRLF", async () => {
    const path = join(dir, "a.log");
    setTimeout(() => writeFileSync(path, "boot\r\nhel"), 20);
    setTimeout(() => appendFileSync(path, "lo world\r\n"), 60);
    const { line } = await waitForLine(path, /hello/, { timeoutMs: 2_000 });
    expect(line).toBe("hello world");
  });

  it("stops when told, and times out", async () => {
    const path = join(dir, "b.log");
    writeFileSync(path, "nothing\n");
    await expect(waitForLine(path, /x/, { timeoutMs: 2_000, stop: () => "the VM ended" })).rejects.toThrow("the VM ended");
    await expect(waitForLine(path, /x/, { timeoutMs: 30 })).rejects.toThrow(/after 30 ms/);
  });

  it("consoleTail keeps the last non-empty lines", () => {
    const path = join(dir, "c.log");
    writeFileSync(path, Array.from({ length: 50 }, (_, i) => `line ${i}`).join("\r\n") + "\r\n\r\n");
    expect(consoleTail(path, 3)).toBe("line 47\nline 48\nline 49");
    expect(consoleTail(join(dir, "missing.log"))).toBe("");
  });
});

describe("isListening", () => {
  it("is true only once a unix socket listens", async () => {
    const path = join(dir, "l.sock");
    expect(isListening(path)).toBe(false);
    const server = createServer();
    await new Promise<void>((r) => server.listen(path, r));
    expect(isListening(path)).toBe(true);
    await new Promise((r) => server.close(r));
    expect(isListening(path)).toBe(false);
  });
});
