import net from "node:net";
import { RotatingLog } from "../../util/rotating-log.js";
import type { SupervisorRun } from "../run.js";

/**
 * The sockets QEMU dials at its start: init's control port, and the guest's console, kept in the console log
 * rotated like the workload's logs (QEMU appending to the file itself let a guest writing /dev/console fill the
 * host's disk at ~45 MB/s); and the workload's log files.
 */
export async function controlPhase(run: SupervisorRun): Promise<void> {
  const controlServer = net.createServer();
  run.controlConnected = new Promise<net.Socket>((resolve) => controlServer.once("connection", resolve));
  await listen(controlServer, run.paths.controlSock);
  run.resources.add("control socket", () => new Promise((resolve) => controlServer.close(() => resolve(undefined))));

  const consoleLog = new RotatingLog(run.paths.consoleLog);
  // One connection, QEMU's: a second dialer gets nothing (the socket is in the worker's 0700 directory anyway).
  const consoleServer = net.createServer({ pauseOnConnect: true });
  consoleServer.maxConnections = 1;
  let qemu: net.Socket | undefined;
  consoleServer.on("connection", (socket) => {
    qemu = socket;
    socket.on("error", () => {});
    // Backpressure: while the file takes a chunk, QEMU's writes wait, and so do the guest's.
    socket.on("data", (chunk: Buffer) => {
      socket.pause();
      // A failed write (the host's disk full) costs the console's bytes, never the supervisor.
      consoleLog.write(chunk).then(
        () => socket.resume(),
        () => socket.resume(),
      );
    });
    socket.resume();
  });
  await listen(consoleServer, run.paths.consoleSock);
  run.resources.add("console", async () => {
    // QEMU has ended by now (the VM is released first): what it wrote last is read to the end, for a second at most.
    const closed = new Promise((resolve) => consoleServer.close(() => resolve(undefined)));
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    qemu?.destroy();
    await closed;
    await consoleLog.close();
  });

  const stdoutLog = new RotatingLog(run.paths.stdoutLog);
  const stderrLog = new RotatingLog(run.paths.stderrLog);
  run.stdoutLog = stdoutLog;
  run.stderrLog = stderrLog;
  run.resources.add("log files", async () => {
    await stdoutLog.close();
    await stderrLog.close();
  });
}

function listen(server: net.Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
}
