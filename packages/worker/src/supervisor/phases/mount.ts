import { mkdir, rm, stat } from "node:fs/promises";
import { MountServer, type MountHandle, type MountOptions } from "@iii/filesystem/client";
import { IiiError } from "../../errors.js";
import { HOST_ACTED_NAMES } from "../../launch/share-safety.js";
import { processStartTime } from "../../host/process-identity.js";
import { lazyUnmount, mountsUnder } from "../cleanup.js";
import type { SupervisorRun } from "../run.js";

/**
 * The root filesystem's FUSE view (image + upper layer + init's virtual files) and one per writable share,
 * each served by @iii/filesystem's server process (never on the supervisor's own event loop: a synchronous
 * call it made on a mountpoint would wait for a reply only that same loop could give).
 */
export async function mountPhase(run: SupervisorRun): Promise<void> {
  const { paths, plan } = run;
  if (plan.mount.fresh) await rm(paths.upper, { recursive: true, force: true });
  await mkdir(paths.upper, { recursive: true });
  await mkdir(paths.mnt, { recursive: true });
  await mkdir(paths.runtime, { recursive: true });
  run.resources.add("run dir", () => rm(paths.runtime, { recursive: true, force: true }));

  const root = await serve(run, plan.mount.root, "the root filesystem", run.rootServer);
  // Beside what the qemu phase, running at the same time, may have recorded already.
  run.record.children = [{ name: "iii-fs", pid: root.serverPid, startTime: processStartTime(root.serverPid) ?? 0 }, ...(run.record.children ?? [])];
  await Promise.all(
    plan.mount.shares.map(async (share) => {
      if (!(await stat(share.host).then((s) => s.isDirectory(), () => false))) {
        throw new IiiError("InvalidOption", `shared directory ${share.host} (for ${share.guest}) is not a directory`);
      }
      if (!share.mount) return;
      await mkdir(share.mount.mountpoint, { recursive: true });
      // Every project's workers file in the share stays read-only to the guest, not only this project's (plan.ts's
      // protectedPaths): see HOST_ACTED_NAMES.
      const options: MountOptions = { ...share.mount, protectedNames: [...new Set([...(share.mount.protectedNames ?? []), ...HOST_ACTED_NAMES])] };
      const server = await serve(run, options, `share ${share.guest}`);
      run.record.children!.push({ name: `iii-fs:${share.guest}`, pid: server.serverPid, startTime: processStartTime(server.serverPid) ?? 0 });
    }),
  );
  await run.writeRecord();
}

async function serve(run: SupervisorRun, options: MountOptions, what: string, server: MountServer = MountServer.start()): Promise<MountHandle> {
  const handle = await server.mount(options);
  run.mounts.push(handle);
  run.resources.add(`${what} mount`, () => unmount(handle));
  handle.on("unmounted", (reason) => {
    if (reason.external) run.childDied(`the FUSE server of ${what} (iii-fs pid ${handle.serverPid}) failed: ${reason.error.message}`);
  });
  return handle;
}

/**
 * Unmounts; when the server had died (killed), its mount is left dead ("Transport endpoint is not connected")
 * until fuse's auto_unmount watchdog gets to it, which can lag seconds: unmount it here, before the run ends.
 */
async function unmount(handle: MountHandle): Promise<void> {
  await handle.unmount();
  if ((await mountsUnder(handle.mountpoint)).includes(handle.mountpoint)) await lazyUnmount(handle.mountpoint);
}
