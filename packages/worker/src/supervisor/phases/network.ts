import { NetworkStack } from "@iii/network";
import { log, type SupervisorRun } from "../run.js";

/** The guest's network: @iii/network's user-space stack on the VM's stream socket, with its egress policy. */
export async function networkPhase(run: SupervisorRun): Promise<void> {
  const stack = new NetworkStack({ ...run.plan.network, log: (line: string) => log(`net: ${line}`) });
  run.stack = stack;
  await stack.listen(run.paths.netSock);
  run.resources.add("network stack", () => stack.close());
}
