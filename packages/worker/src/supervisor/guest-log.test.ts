import { describe, expect, it } from "vitest";
import { budgetedLog } from "./guest-log.js";

describe("budgetedLog", () => {
  it("cuts long lines and stops after the budget with one line saying so", () => {
    const lines: string[] = [];
    const log = budgetedLog((l) => lines.push(l), { budgetBytes: 10_000, lineBytes: 100 });
    for (let i = 0; i < 10_000; i++) log(`guest: ${"x".repeat(i % 3 === 0 ? 5_000 : 50)}`);
    const bytes = lines.reduce((n, l) => n + Buffer.byteLength(l), 0);
    expect(bytes).toBeLessThan(10_000 + 200);
    expect(lines.filter((l) => l.includes("further messages dropped"))).toHaveLength(1);
    expect(lines.at(-1)).toBe("guest: further messages dropped (10000 bytes of them logged this run)");
    expect(Math.max(...lines.slice(0, -1).map((l) => Buffer.byteLength(l)))).toBeLessThanOrEqual(100 + 12);
  });

  it("passes short lines through unchanged", () => {
    const lines: string[] = [];
    const log = budgetedLog((l) => lines.push(l));
    log("guest: hello");
    expect(lines).toEqual(["guest: hello"]);
  });
});
