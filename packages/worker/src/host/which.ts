import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { execFileSync } from "node:child_process";

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** First executable named `name` on PATH, then in `extraDirs`. */
export function which(name: string, extraDirs: string[] = [], env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? "").split(delimiter), ...extraDirs];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** First line of `<bin> --version`, or undefined when it does not run. */
export function versionLine(bin: string, args: string[] = ["--version"]): string | undefined {
  try {
    const out = execFileSync(bin, args, { encoding: "utf8", timeout: 5_000, stdio: ["ignore", "pipe", "pipe"] });
    return out.split("\n").find((line) => line.trim().length > 0)?.trim();
  } catch {
    return undefined;
  }
}
