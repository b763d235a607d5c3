import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open, readlink, realpath, type FileHandle } from "node:fs/promises";
import { isAbsolute, join, relative } from "node:path";
import { errnoCode } from "../errors.js";
import { DevProjectError } from "./errors.js";

// The files `iii worker dev` reads from the project on the host (iii.worker.yaml, package.json, pyproject.toml,
// lockfiles, the install marker) are written by the dev guest too (the project is its /workspace), and a cloned
// project brings its own links. A link is followed only while it stays in the project: `package.json ->
// /dev/zero` made the host read 512 MiB before failing, `package-lock.json` looping to itself ended the dev CLI
// (an uncaught ELOOP from the watcher) with the VM left running, and `iii.worker.yaml -> <a host file>` put that
// file's `name`/`env`/`scripts` into the guest. Only regular files are opened (never a device or FIFO a link names:
// opening /dev/watchdog arms it), with O_NOFOLLOW|O_NONBLOCK, and what was opened is checked again through
// /proc/self/fd (a directory swapped for a link after the check), then read up to a bound.

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** What a project-relative name is, judged without leaving the project. */
type Resolved = { kind: "absent" } | { kind: "file"; path: string } | { kind: "refused"; why: string };

function inside(realRoot: string, real: string): boolean {
  const rel = relative(realRoot, real);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

async function resolveProjectFile(root: string, name: string): Promise<Resolved> {
  const path = join(root, name);
  let info = await lstat(path).catch((error: unknown) => {
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return undefined;
    throw error;
  });
  if (!info) return { kind: "absent" };
  // realpath for every name, not only a link: a directory above it (`src` in `src/app/__main__.py`) may be one.
  const to = info.isSymbolicLink() ? await readlink(path).catch(() => "?") : undefined;
  let real: string;
  try {
    real = await realpath(path);
  } catch (error) {
    // A dangling link is nothing there (as reading it always said); a loop is refused.
    if (errnoCode(error) === "ENOENT" || errnoCode(error) === "ENOTDIR") return { kind: "absent" };
    return { kind: "refused", why: `a link that does not resolve (${to ?? name}: ${errnoCode(error) ?? "error"})` };
  }
  if (!inside(await realpath(root), real)) return { kind: "refused", why: `a link out of the project (${to !== undefined ? `to ${to}` : `${name} resolves to ${real}`})` };
  const target = real;
  info = await lstat(real);
  if (!info.isFile()) return { kind: "refused", why: "not a regular file" };
  return { kind: "file", path: target };
}

/** Opens a resolved file; undefined when what is there now is not a regular file in the project. */
async function openResolved(root: string, path: string): Promise<FileHandle | undefined> {
  const handle = await open(path, OPEN_FLAGS).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const [info, real, realRoot] = await Promise.all([handle.stat(), realpath(`/proc/self/fd/${handle.fd}`), realpath(root)]);
    if (info.isFile() && inside(realRoot, real)) return handle;
  } catch {
    // fall through: refused
  }
  await handle.close();
  return undefined;
}

/** Reads at most `maxBytes + 1` bytes; the caller refuses more than `maxBytes`. */
async function readBounded(handle: FileHandle, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const buffer = Buffer.alloc(Math.min(64 * 1024, maxBytes + 1 - total));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
    if (bytesRead === 0) break;
    chunks.push(buffer.subarray(0, bytesRead));
    total += bytesRead;
    if (total > maxBytes) break;
  }
  return Buffer.concat(chunks);
}

/** Project manifests (iii.worker.yaml, package.json, pyproject.toml) are read up to this size. */
export const PROJECT_FILE_MAX_BYTES = 4 * 1024 * 1024;

/**
 * The text of `<root>/<name>`, or undefined when there is nothing there (a dangling link included). A link out of
 * the project, a link loop, anything but a regular file, or more than `maxBytes` is refused in one line naming it.
 */
export async function readProjectText(root: string, name: string, maxBytes = PROJECT_FILE_MAX_BYTES): Promise<string | undefined> {
  const refuse = (why: string) =>
    new DevProjectError("UnsafeProjectFile", `${join(root, name)} is ${why}; iii worker dev reads only regular files in the project: remove or replace it and run again`);
  const resolved = await resolveProjectFile(root, name);
  if (resolved.kind === "absent") return undefined;
  if (resolved.kind === "refused") throw refuse(resolved.why);
  const handle = await openResolved(root, resolved.path);
  if (!handle) throw refuse("not a regular file in the project (it changed while read)");
  try {
    const data = await readBounded(handle, maxBytes);
    if (data.length > maxBytes) throw refuse(`larger than ${maxBytes} bytes`);
    return data.toString("utf8");
  } finally {
    await handle.close();
  }
}

/** Whether `<root>/<name>` is a regular file in the project (a link to one in the project counts). Never throws. */
export async function isProjectFile(root: string, name: string): Promise<boolean> {
  return resolveProjectFile(root, name).then(
    (resolved) => resolved.kind === "file",
    () => false,
  );
}

/** Install inputs (lockfiles) are hashed up to this size; a bigger one counts as changed every time. */
export const INSTALL_INPUT_MAX_BYTES = 256 * 1024 * 1024;

/**
 * `<root>/<name>`'s SHA-256 (hex) as the dev script's `sha256sum` computes it, `undefined` when absent, or
 * `"unreadable"` for what the host does not read (a link out of the project, a loop, not a regular file, over
 * `maxBytes`): the key then differs from the guest's, which only means install runs again. Never throws.
 */
export async function projectFileDigest(root: string, name: string, maxBytes = INSTALL_INPUT_MAX_BYTES): Promise<string | undefined> {
  try {
    const resolved = await resolveProjectFile(root, name);
    if (resolved.kind === "absent") return undefined;
    if (resolved.kind === "refused") return "unreadable";
    const handle = await openResolved(root, resolved.path);
    if (!handle) return "unreadable";
    try {
      const hash = createHash("sha256");
      const buffer = Buffer.alloc(256 * 1024);
      let total = 0;
      for (;;) {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) break;
        total += bytesRead;
        if (total > maxBytes) return "unreadable";
        hash.update(buffer.subarray(0, bytesRead));
      }
      return hash.digest("hex");
    } finally {
      await handle.close();
    }
  } catch {
    return "unreadable";
  }
}
