import { describe, expect, it } from "vitest";
import { DEFAULT_HEALTH, healthOptionsFrom } from "./health.js";

describe("healthOptionsFrom", () => {
  it("keeps the defaults when nothing is set, and takes each variable that is", () => {
    expect(healthOptionsFrom({})).toEqual(DEFAULT_HEALTH);
    expect(healthOptionsFrom({ III_HEALTH_INTERVAL_MS: "1000", III_HEALTH_MISSES: "2" })).toEqual({ ...DEFAULT_HEALTH, intervalMs: 1000, misses: 2 });
  });

  it("refuses a value that is not a positive integer, naming the variable", () => {
    for (const bad of ["0", "-5", "1.5", "soon"]) {
      expect(() => healthOptionsFrom({ III_HEALTH_TIMEOUT_MS: bad })).toThrow(expect.objectContaining({ code: "InvalidOption", message: `III_HEALTH_TIMEOUT_MS must be a positive integer, got "${bad}"` }));
    }
  });
});
