import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { isSameProcessAlive } from "../host/process-identity.js";
import { readJson, type VmRecord } from "../state/vm-record.js";
import { IiiError } from "../errors.js";

/**
 * The lowest network slot no live VM holds. Each VM has its own private stack, so slots only have to
 * differ to keep addresses and MACs unique in logs and captures; the caller holds the slots lock.
 */
export async function allocateSlot(managedRoot: string): Promise<number> {
  const used = new Set<number>();
  // managed/<project key>/<worker>/vm.json
  for (const project of await readdir(managedRoot).catch(() => [] as string[])) {
    for (const name of await readdir(join(managedRoot, project)).catch(() => [] as string[])) {
      const record = await readJson<VmRecord>(join(managedRoot, project, name, "vm.json"));
      if (record && typeof record.slot === "number" && isSameProcessAlive(record)) used.add(record.slot);
    }
  }
  for (let slot = 0; slot <= 0xffff; slot++) if (!used.has(slot)) return slot;
  throw new IiiError("VmBootFailed", `no free network slot under ${join(managedRoot)}`);
}
