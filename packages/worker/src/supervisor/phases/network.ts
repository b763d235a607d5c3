import { closeSync } from "node:fs";
import { NetworkStack } from "@iii/network";
import { openOutputFile } from "../../host/output-file.js";
import { budgetedLog, guestLogBudget } from "../guest-log.js";
import { log, type SupervisorRun } from "../run.js";

/** The guest's network: @iii/network's user-space stack on the VM's stream socket, with its egress policy. */
export async function networkPhase(run: SupervisorRun): Promise<void> {
  // Most of its lines are the guest's doing (a denied connection or name is one line each): budgeted.
  const netLog = budgetedLog(log, { what: "net", budgetBytes: guestLogBudget(run.env) });
  // `--capture FILE` is opened here, as root, without following another user's link (host/output-file.ts); the
  // stack's writer then opens exactly that file through /proc/self/fd.
  const pcapPath = run.plan.network.pcapPath;
  let captureFd: number | undefined;
  if (pcapPath !== undefined) {
    captureFd = openOutputFile(pcapPath, `--capture ${pcapPath}`);
    const fd = captureFd;
    run.resources.add("capture file", () => closeSync(fd));
  }
  const stack = new NetworkStack({
    ...run.plan.network,
    ...(captureFd !== undefined ? { pcapPath: `/proc/self/fd/${captureFd}` } : {}),
    log: (line: string) => netLog(`net: ${line}`),
  });
  run.stack = stack;
  await stack.listen(run.paths.netSock);
  run.resources.add("network stack", () => stack.close());
}
