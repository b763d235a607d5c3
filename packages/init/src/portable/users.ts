// /etc/passwd and /etc/group resolution without file access (shared by the Node and the static init).

export interface ResolvedUser {
  uid: number;
  gid: number;
  name: string | null;
  home: string;
}

export class UserResolveError extends Error {
  readonly code = "UserUnresolved";
  constructor(message: string) {
    super(message);
    this.name = "UserResolveError";
  }
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** The entries of an /etc/passwd text (lines with numeric uid and gid); `home` as written, possibly empty. */
export function parsePasswd(text: string): PasswdEntry[] {
  return text
    .split("\n")
    .map((line) => line.split(":"))
    .filter((f) => f.length >= 7 && /^\d+$/.test(f[2]!) && /^\d+$/.test(f[3]!))
    .map((f) => ({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }));
}

export function parseGroup(text: string): Array<{ name: string; gid: number }> {
  return text
    .split("\n")
    .map((line) => line.split(":"))
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2]!))
    .map((f) => ({ name: f[0]!, gid: Number(f[2]) }));
}

/**
 * Pure resolution given /etc/passwd's text; `spec` null means root. `readGroup` gives /etc/group's text and is
 * called only for a group given by name (in the guest every read is a few round trips through virtio-fs).
 */
export function resolveUserSpec(spec: string | null, passwdText: string, readGroup: () => string): ResolvedUser {
  const passwd = parsePasswd(passwdText);
  const [userPart, groupPart] = (spec ?? "0").split(":") as [string, string | undefined];
  let entry: PasswdEntry | undefined;
  let uid: number;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (!entry) throw new UserResolveError(`user "${userPart}" not found in /etc/passwd`);
    uid = entry.uid;
  }
  let gid: number;
  if (groupPart === undefined) gid = entry?.gid ?? uid;
  else if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
  else {
    const g = parseGroup(readGroup()).find((x) => x.name === groupPart);
    if (!g) throw new UserResolveError(`group "${groupPart}" not found in /etc/group`);
    gid = g.gid;
  }
  return { uid, gid, name: entry?.name ?? null, home: entry ? entry.home || "/" : uid === 0 ? "/root" : "/" };
}

