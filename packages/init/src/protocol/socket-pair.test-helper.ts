// Test helper: a connected unix-socket pair whose ends, server and directory go when the test ends.
import { createServer, connect, type Server, type Socket } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** `[host end, guest end]` of a fresh unix-socket connection, closed after the current test. */
export async function socketPair(): Promise<[Socket, Socket]> {
  const dir = mkdtempSync(join(tmpdir(), `iii-init-pair-${process.pid}-`));
  const path = join(dir, "s");
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once("connection", r));
  const client = connect(path);
  const guestSide = await accepted;
  cleanups.push(() => {
    client.destroy();
    guestSide.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return [client, guestSide];
}

/** Runs `fn` after the current test (with the socket pairs' cleanup). */
export function afterThisTest(fn: () => void): void {
  cleanups.push(fn);
}
