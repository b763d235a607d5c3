import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { listenUnixSocket } from "./listen-socket.js";

const dir = mkdtempSync(join(tmpdir(), "iii-listen-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Connects and collects what the server sends until the connection ends (or fails). */
function connectAndRead(path: string): { connected: Promise<void>; received: Promise<{ text: string; error?: string }> } {
  const socket = net.connect(path);
  let text = "";
  const connected = new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  const received = new Promise<{ text: string; error?: string }>((resolve) => {
    socket.on("data", (d) => (text += d));
    socket.on("error", (e: NodeJS.ErrnoException) => resolve({ text, error: e.code }));
    socket.on("close", () => resolve({ text }));
  });
  return { connected, received };
}

describe("listenUnixSocket", () => {
  it("listens at once (a client connects before anyone accepts) and a child given the descriptor as fd 3 serves that client", async () => {
    const path = join(dir, "a.sock");
    writeFileSync(path, "stale");
    const fd = listenUnixSocket(path);
    expect(statSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const client = connectAndRead(path);
    await client.connected; // waiting in the backlog: nothing has accepted yet
    const child = spawn(process.execPath, ["-e", `require("net").createServer((s) => s.end("served")).listen({ fd: 3 })`], { stdio: ["ignore", "inherit", "inherit", fd] });
    closeSync(fd);
    try {
      expect(await client.received).toEqual({ text: "served" });
    } finally {
      child.kill();
    }
  });

  it("closing the only descriptor before a server took it resets the waiting client", async () => {
    const path = join(dir, "b.sock");
    const fd = listenUnixSocket(path);
    const client = connectAndRead(path);
    await client.connected;
    closeSync(fd);
    const outcome = await client.received;
    expect(outcome.text).toBe("");
    expect(outcome.error === undefined || outcome.error === "ECONNRESET").toBe(true);
  });

  it("refuses a path longer than sun_path", () => {
    expect(() => listenUnixSocket(join(dir, "x".repeat(120)))).toThrow(/longer than/);
  });
});
