import net from "node:net";
import { RotatingLog } from "../../util/rotating-log.js";
import type { SupervisorRun } from "../run.js";

/** The socket init's control port connects to (QEMU dials it), and the workload's log files. */
export async function controlPhase(run: SupervisorRun): Promise<void> {
  const controlServer = net.createServer();
  run.controlConnected = new Promise<net.Socket>((resolve) => controlServer.once("connection", resolve));
  await new Promise<void>((resolve, reject) => {
    controlServer.once("error", reject);
    controlServer.listen(run.paths.controlSock, () => resolve());
  });
  run.resources.add("control socket", () => new Promise((resolve) => controlServer.close(() => resolve(undefined))));

  const stdoutLog = new RotatingLog(run.paths.stdoutLog);
  const stderrLog = new RotatingLog(run.paths.stderrLog);
  run.stdoutLog = stdoutLog;
  run.stderrLog = stderrLog;
  run.resources.add("log files", async () => {
    await stdoutLog.close();
    await stderrLog.close();
  });
}
