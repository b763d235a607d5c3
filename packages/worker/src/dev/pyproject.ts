/**
 * Just enough of pyproject.toml for dev mode: `[project] name` and the keys of `[project.scripts]`.
 *
 * Not a TOML parser. It reads `key = "string"` lines inside those two tables, which is how both are written in
 * practice; anything else (inline tables, multi-line strings, arrays) is skipped. When it finds nothing, dev
 * mode asks for an explicit start command rather than guessing.
 */
export interface PyprojectInfo {
  name?: string;
  scripts: string[];
}

const TABLE = /^\s*\[\s*([^\]]+?)\s*\]\s*(?:#.*)?$/;
const STRING_KEY = /^\s*("?)([A-Za-z0-9_.-]+)\1\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$/;

export function parsePyproject(text: string): PyprojectInfo {
  const info: PyprojectInfo = { scripts: [] };
  let table = "";
  for (const line of text.split(/\r?\n/)) {
    const header = TABLE.exec(line);
    if (header) {
      table = header[1]!.replace(/\s+/g, "");
      continue;
    }
    const entry = STRING_KEY.exec(line);
    if (!entry) continue;
    const key = entry[2]!;
    const value = entry[3] ?? entry[4] ?? "";
    if (table === "project" && key === "name") info.name = value;
    else if (table === "project.scripts") info.scripts.push(key);
  }
  return info;
}

/** PEP 503-style normalisation to an importable module name: `my-worker.x` → `my_worker_x`. */
export function moduleNameFor(projectName: string): string {
  return projectName.trim().toLowerCase().replace(/[-_.]+/g, "_");
}
