import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { isSameProcessAlive } from "../host/process-identity.js";
import { readVmRecord } from "../status.js";

/**
 * The lowest network slot no live VM holds. Each VM has its own private stack, so slots only have to
 * differ to keep addresses and MACs unique in logs and captures; the caller holds the slots lock.
 */
export async function allocateSlot(managedRoot: string, env: NodeJS.ProcessEnv): Promise<number> {
  const used = new Set<number>();
  let names: string[] = [];
  try {
    names = await readdir(managedRoot);
  } catch {
    names = [];
  }
  for (const name of names) {
    const record = await readVmRecord(name, env);
    if (record && typeof record.slot === "number" && isSameProcessAlive(record)) used.add(record.slot);
  }
  for (let slot = 0; slot <= 0xffff; slot++) if (!used.has(slot)) return slot;
  throw new Error(`no free network slot under ${join(managedRoot)}`);
}
