import { closeSync, openSync, readSync } from "node:fs";
import { resolve } from "node:path";
import { IiiError } from "../errors.js";
import { isWasmImage, type MountSpec, type WorkerSpec } from "../state/model.js";
import { isWithin, realOrSelf } from "../util/path-within.js";
import { detectWasmKind } from "../wasm/kind.js";

/**
 * A VM guest and a preview 1 WASM module may not share a host directory the guest can write. Preview 1 runs on
 * node:wasi, which lets the host kernel follow a symlink in the middle of a path; the runner refuses links that
 * lead out of a dir when the module starts (wasm/mount-links.ts), but a guest writing the same directory can plant
 * `up -> /` while the module runs, and the module (the runner is root's) then reads and writes the host through it.
 * Refused for the workers of one project, at `add` and at `start` of either, and for `iii worker dev` (its
 * project share) against the project's preview 1 workers. A read-only share on the VM side is fine; components
 * (preview 2) resolve every path component themselves.
 */
export function assertNoDirSharedWithPreview1(name: string, spec: WorkerSpec, workers: Readonly<Record<string, WorkerSpec>>, cwd: string): void {
  const mine = roles(spec, cwd);
  for (const [other, otherSpec] of Object.entries(workers)) {
    if (other === name) continue;
    const theirs = roles(otherSpec, cwd);
    const pairs: Array<[vm: { worker: string; mounts: MountSpec[] }, wasm: { worker: string; mounts: MountSpec[] }]> = [
      [{ worker: name, mounts: mine.vmWritable }, { worker: other, mounts: theirs.preview1 }],
      [{ worker: other, mounts: theirs.vmWritable }, { worker: name, mounts: mine.preview1 }],
    ];
    for (const [vm, wasm] of pairs) {
      for (const share of vm.mounts) {
        const a = realOrSelf(resolve(cwd, share.host));
        for (const dir of wasm.mounts) {
          const b = realOrSelf(resolve(cwd, dir.host));
          if (!isWithin(a, b) && !isWithin(b, a)) continue;
          throw new IiiError(
            "InvalidOption",
            `VM worker "${vm.worker}" shares ${share.host} (${share.guest}) writable and preview 1 WASM worker "${wasm.worker}" mounts ${dir.host} (${dir.guest}): ` +
              `a link the guest plants there would take the module out of its dir, onto the host as root; make the VM's share read-only (:ro), or use separate directories`,
          );
        }
      }
    }
  }
}

function roles(spec: WorkerSpec, cwd: string): { vmWritable: MountSpec[]; preview1: MountSpec[] } {
  if (!isWasmImage(spec.image)) return { vmWritable: spec.mounts.filter((m) => !m.readOnly), preview1: [] };
  return { vmWritable: [], preview1: isComponent(resolve(cwd, spec.image.slice("wasm:".length))) ? [] : spec.mounts };
}

/** Whether the file is a WebAssembly component (wasm/kind.ts); a module, or a file not (yet) readable, counts as preview 1. */
function isComponent(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const header = Buffer.alloc(8);
    readSync(fd, header, 0, 8, 0);
    return detectWasmKind(header, path) === "component";
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
