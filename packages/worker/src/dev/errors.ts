import { IiiError } from "../errors.js";

/**
 * Why a directory cannot be run with `iii worker dev`:
 * - `NoProject`: none of iii.worker.yaml, package.json, pyproject.toml, requirements.txt;
 * - `InvalidManifest`: iii.worker.yaml (or package.json) is unreadable, not the right shape, or has a bad value;
 * - `UnsupportedLanguage`: a runtime other than node or python;
 * - `NoStartCommand`: nothing says how to start the workload (we never guess one);
 * - `UnsafeProjectFile`: a file dev reads is a link out of the project, a loop, not a regular file, or too big.
 */
export type DevProjectProblem = "NoProject" | "InvalidManifest" | "UnsupportedLanguage" | "NoStartCommand" | "UnsafeProjectFile";

/** A dev-mode project error. Its `code` is the existing `InvalidOption`; `problem` says which kind. */
export class DevProjectError extends IiiError {
  readonly problem: DevProjectProblem;
  /** What would have made it work, e.g. `["scripts.start in iii.worker.yaml", "main.py"]`. */
  readonly missing: readonly string[];

  constructor(
    problem: DevProjectProblem,
    message: string,
    options: { missing?: readonly string[]; cause?: unknown } = {},
  ) {
    super("InvalidOption", message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "DevProjectError";
    this.problem = problem;
    this.missing = options.missing ?? [];
  }
}
