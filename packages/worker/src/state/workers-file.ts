import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { lstat, open, readlink, rename, rm, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { errnoCode, IiiError } from "../errors.js";
import { withFileLock } from "../host/file-lock.js";
import { mkdirs } from "../host/mkdirs.js";

// yaml is bundled into dist (tsup.config.ts: its ES module build, one chunk): loaded through its ~40 CommonJS
// files it cost `start` 50-110 ms before the supervisor could get `go`; bundled it loads in ~10 ms.
import { parseDocument, stringify } from "yaml";
import { decodeWorkersFile, encodeWorkersFile, type WorkersFile } from "./model.js";

const HEADER = "# iii managed workers (written by iii-worker; edits are kept)\n";

function parseWorkersYaml(text: string, path: string): WorkersFile {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const first = document.errors[0];
  if (first) {
    const at = first.linePos?.[0];
    const where = at ? `line ${at.line}, column ${at.col}` : "unknown position";
    throw new IiiError("StateFileCorrupt", `${path} is not valid YAML (${where}): ${first.message.split("\n")[0]}`, {
      cause: first,
    });
  }
  try {
    return decodeWorkersFile(document.toJS());
  } catch (error) {
    if (error instanceof IiiError) {
      throw new IiiError("StateFileCorrupt", `${path}: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

/** Reads `iii.workers.yaml`. A missing file is an empty one; a corrupt one is an error, never replaced. */
export async function loadWorkersFile(path: string): Promise<WorkersFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return { workers: {} };
    throw new IiiError("StateFileUnwritable", `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseWorkersYaml(text, path);
}

export function serializeWorkersFile(file: WorkersFile): string {
  return HEADER + stringify(encodeWorkersFile(file), { lineWidth: 0 });
}

/** The mode of the regular file at `path`, undefined if there is none; refuses a link or anything else. */
async function existingFileMode(path: string): Promise<number | undefined> {
  try {
    const st = await lstat(path);
    if (st.isSymbolicLink()) {
      const target = await readlink(path).catch(() => "?");
      throw new IiiError("StateFileUnwritable", `${path} is a symbolic link (to ${target}); refusing to write through it (remove the link)`);
    }
    if (!st.isFile()) throw new IiiError("StateFileUnwritable", `${path} is not a regular file`);
    return st.mode & 0o7777;
  } catch (error) {
    if (error instanceof IiiError) throw error;
    if (errnoCode(error) === "ENOENT") return undefined;
    throw new IiiError("StateFileUnwritable", `cannot write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Temp file + fsync + rename, never through a symbolic link: the file lives in a project directory,
 * which a worker (`iii worker dev` mounts the project read-write) may write, so a link planted at its
 * name is refused rather than followed to whatever it points at; the rename replaces a name, so one
 * swapped in after the check is replaced, not written through. An existing file keeps its mode.
 */
async function writeAtomically(path: string, file: WorkersFile): Promise<void> {
  const mode = (await existingFileMode(path)) ?? 0o644;
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    try {
      await fh.writeFile(serializeWorkersFile(file));
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw new IiiError("StateFileUnwritable", `cannot write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Read-modify-write of the state file under an exclusive flock on `<file>.lock`, written with temp file +
 * fsync + rename, so concurrent processes never lose an update and a crash never leaves a torn file.
 * `change` may throw to abort; nothing is written then.
 */
export async function updateWorkersFile<T>(path: string, change: (file: WorkersFile) => T | Promise<T>): Promise<T> {
  await mkdirs(dirname(path));
  return withFileLock(`${path}.lock`, async () => {
    await existingFileMode(path);
    const file = await loadWorkersFile(path);
    const result = await change(file);
    await writeAtomically(path, file);
    return result;
  });
}
