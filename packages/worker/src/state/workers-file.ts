import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { errnoCode, IiiError } from "../errors.js";
import { withFileLock } from "../host/file-lock.js";
import { mkdirs } from "../host/mkdirs.js";

// yaml is bundled into dist (tsup.config.ts: its ES module build, one chunk): loaded through its ~40 CommonJS
// files it cost `start` 50-110 ms before the supervisor could get `go`; bundled it loads in ~10 ms.
import { parseDocument, stringify } from "yaml";
import { decodeWorkersFile, encodeWorkersFile, type WorkersFile } from "./model.js";
import { writeFileAtomic } from "../util/atomic-write.js";

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

async function writeAtomically(path: string, file: WorkersFile): Promise<void> {
  try {
    await writeFileAtomic(path, serializeWorkersFile(file), { fsync: true, mode: 0o644 });
  } catch (error) {
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
    const file = await loadWorkersFile(path);
    const result = await change(file);
    await writeAtomically(path, file);
    return result;
  });
}
