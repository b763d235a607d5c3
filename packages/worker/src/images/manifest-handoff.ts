import type { FetchedManifest } from "./registry/client.js";

/**
 * The manifest a caller already fetched for a reference, handed to the pull that follows in the same command:
 * `add` asks whether a reference is a WASM artifact (a manifest GET) and, when it is a container image, pulls it
 * with `ensureImage`, whose manifest stage takes the handed-off document instead of asking the registry again.
 * Each entry is used once and only for a short while.
 */
const HANDOFF_MS = 60_000;
const handedOff = new Map<string, { fetched: FetchedManifest; at: number }>();

export function handOffManifest(reference: string, fetched: FetchedManifest): void {
  handedOff.set(reference, { fetched, at: Date.now() });
}

export function takeHandedOffManifest(reference: string): FetchedManifest | undefined {
  const entry = handedOff.get(reference);
  handedOff.delete(reference);
  return entry && Date.now() - entry.at < HANDOFF_MS ? entry.fetched : undefined;
}
