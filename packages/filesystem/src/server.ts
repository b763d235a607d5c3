// Child-process FUSE server for `mountPassthrough({ isolation: "process" })`: the
// mount is served here, so nothing the parent does (sync fs calls on the mount,
// spawning with cwd inside it) can deadlock against the serving JS thread.
import { FilesystemError } from "./errors.js";
import type { MountHandle, MountOptions } from "./mount/mount.js";

// No enableCompileCache() here: without a directory it means $TMPDIR/node-compile-cache, where another local user
// can plant code this (root) process would run. A parent that approved a private cache directory passes it as
// NODE_COMPILE_CACHE, which Node honours by itself (@iii/worker's CLI does).
// Loading starts now; the message handler is registered at once (below) and waits for it, so no message that
// arrives meanwhile is missed, and messages are handled in order.
const mountModule = import("./mount/mount.js");

type ParentMessage = { type: "mount"; options: MountOptions; statsIntervalMs: number } | { type: "unmount" } | { type: "stats" } | { type: "memory" };

let handle: MountHandle | undefined;
let statsTimer: NodeJS.Timeout | undefined;

function send(message: unknown): void {
  if (process.connected) process.send?.(message);
}

async function shutdown(code: number): Promise<never> {
  if (statsTimer) clearInterval(statsTimer);
  try {
    await handle?.unmount();
  } catch (err) {
    send({ type: "error", code: (err as FilesystemError).code ?? "UnmountFailed", message: (err as Error).message });
    code = 7;
  }
  if (handle) send({ type: "stats", stats: handle.stats() });
  send({ type: "unmounted", external: false });
  process.exit(code);
}

process.on("message", (m: ParentMessage) => void mountModule.then(({ mountPassthrough, measureAfterGc }) => {
  if (m.type === "mount") {
    mountPassthrough({ ...m.options, isolation: "in-process" }).then(
      (h) => {
        handle = h;
        h.on("unmounted", (reason) => {
          if (!reason.external) return;
          send({ type: "stats", stats: h.stats() });
          send({ type: "unmounted", external: true, code: reason.error.code, message: reason.error.message });
          process.exit(3);
        });
        // Only a change crosses the IPC channel: an idle mount costs the parent no wake-ups.
        let last = "";
        if (m.statsIntervalMs > 0) statsTimer = setInterval(() => {
          const stats = h.stats();
          const key = JSON.stringify(stats);
          if (key === last) return;
          last = key;
          send({ type: "stats", stats });
        }, m.statsIntervalMs);
        statsTimer?.unref();
        send({ type: "mounted", pid: process.pid });
      },
      (err: unknown) => {
        const e = err instanceof FilesystemError ? err : new FilesystemError("MountFailed", (err as Error).message);
        send({ type: "error", code: e.code, message: e.message });
        process.exit(1);
      },
    );
  } else if (m.type === "unmount") {
    void shutdown(0);
  } else if (m.type === "memory") {
    send({ type: "memory", memory: measureAfterGc() });
  } else if (m.type === "stats" && handle) {
    send({ type: "stats", stats: handle.stats() });
  }
}));

// The parent went away: never leave a mount behind.
process.on("disconnect", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));
process.on("SIGINT", () => void shutdown(0));
