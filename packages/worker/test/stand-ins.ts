// Test helpers for host-side tests that play the guest or a child process: a connected unix-socket pair
// and a liveness check by pid.
import { connect, createServer, type Socket } from "node:net";

/**
 * `[host end, guest end]` of a fresh unix-socket connection on `path`; `onCleanup` receives what closes both ends
 * and the server (the caller runs it when the test ends).
 */
export async function unixSocketPair(path: string, onCleanup: (close: () => void) => void): Promise<[host: Socket, guest: Socket]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once("connection", r));
  const host = connect(path);
  const guest = await accepted;
  onCleanup(() => {
    host.destroy();
    guest.destroy();
    server.close();
  });
  return [host, guest];
}

/** Whether a process with this pid exists (a zombie not yet reaped counts: signal 0 reaches it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
