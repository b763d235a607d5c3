import { NetworkStack } from "@iii/network";
import { budgetedLog, guestLogBudget } from "../guest-log.js";
import { log, type SupervisorRun } from "../run.js";

/** The guest's network: @iii/network's user-space stack on the VM's stream socket, with its egress policy. */
export async function networkPhase(run: SupervisorRun): Promise<void> {
  // Most of its lines are the guest's doing (a denied connection or name is one line each): budgeted.
  const netLog = budgetedLog(log, { what: "net", budgetBytes: guestLogBudget(run.env) });
  const stack = new NetworkStack({ ...run.plan.network, log: (line: string) => netLog(`net: ${line}`) });
  run.stack = stack;
  await stack.listen(run.paths.netSock);
  run.resources.add("network stack", () => stack.close());
}
