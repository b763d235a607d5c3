/**
 * Downloads in flight in this process, by destination: partial files are named by pid, so two pulls of the
 * same blob in one process (start-all of workers sharing an image) must share one download.
 */
const inflight = new Map<string, Promise<void>>();

/** Runs `download` for `path` unless one is already running in this process, whose outcome is then shared. */
export function downloadOnce(path: string, download: () => Promise<void>): Promise<void> {
  let pending = inflight.get(path);
  if (!pending) {
    pending = download().finally(() => inflight.delete(path));
    inflight.set(path, pending);
  }
  return pending;
}
