// Resolve "uid[:gid]" / "name[:group]" against the guest's /etc/passwd and
// /etc/group (the image's, not the host's).

import { readFileSync } from "node:fs";

import { resolveUserSpec, type ResolvedUser } from "../portable/users.js";

export { parseGroup, parsePasswd, resolveUserSpec, UserResolveError, type ResolvedUser } from "../portable/users.js";

function readOr(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

export function resolveUser(spec: string | null): ResolvedUser {
  return resolveUserSpec(spec, readOr("/etc/passwd"), readOr("/etc/group"));
}
