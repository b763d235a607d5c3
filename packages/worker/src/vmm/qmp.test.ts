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

describe("QmpClient", () => {
  it("negotiates capabilities, runs commands and collects events from a QMP server", async () => {
    const { createServer } = await import("node:net");
    const { mkdtempSync, rmSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const { QmpClient } = await import("./qmp.js");
    const dir = mkdtempSync(join(tmpdir(), "iii-qmp-"));
    const path = join(dir, "qmp.sock");
    const seen: string[] = [];
    const server = createServer((socket) => {
      socket.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
      let buffer = "";
      socket.on("data", (chunk) => {
        buffer += chunk.toString();
        for (let i; (i = buffer.indexOf("\n")) >= 0; ) {
          const { execute } = JSON.parse(buffer.slice(0, i)) as { execute: string };
          buffer = buffer.slice(i + 1);
          seen.push(execute);
          if (execute === "query-status") {
            socket.write('{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n');
            socket.write('{"return": {"status": "internal-error", "running": false}}\r\n');
          } else if (execute === "bogus") {
            socket.write('{"error": {"class": "CommandNotFound", "desc": "The command bogus has not been found"}}\r\n');
          } else {
            socket.write('{"return": {}}\r\n');
          }
        }
      });
    });
    // The client retries until the socket exists, as with a QEMU that is still starting.
    setTimeout(() => server.listen(path), 50);
    const client = await QmpClient.connect(path, 2_000);
    try {
      const events: string[] = [];
      client.onEvent((e) => events.push(e.event));
      expect(await client.execute("query-status")).toEqual({ status: "internal-error", running: false });
      expect(events).toEqual(["STOP"]);
      await expect(client.execute("bogus")).rejects.toThrow(/CommandNotFound: The command bogus/);
      expect(seen).toEqual(["qmp_capabilities", "query-status", "bogus"]);
    } finally {
      client.close();
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
