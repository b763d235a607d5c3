import { describe, expect, it } from "vitest";
import { shutdownReason, type QmpEvent } from "./qmp.js";

const ev = (event: string, data?: unknown): QmpEvent => ({ event, data, atMs: 0 });

describe("shutdownReason", () => {
  it("takes the SHUTDOWN reason; a panic wins over the reset that follows it", () => {
    expect(shutdownReason([])).toBeUndefined();
    expect(shutdownReason([ev("SHUTDOWN", { guest: true, reason: "guest-reset" })])).toBe("guest-reset");
    expect(shutdownReason([ev("SHUTDOWN", { guest: false, reason: "host-qmp-quit" })])).toBe("host-qmp-quit");
    expect(shutdownReason([ev("GUEST_PANICKED"), ev("SHUTDOWN", { reason: "guest-reset" })])).toBe("guest-panic");
  });
});
