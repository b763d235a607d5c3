/** A parsed `WWW-Authenticate` challenge (RFC 7235; the registry token spec uses Bearer with realm/service/scope). */
export interface AuthChallenge {
  scheme: string;
  params: Record<string, string>;
}

const PARAM = /^([\w!#$%&'*+.^`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/;
const SCHEME = /^([\w!#$%&'*+.^`|~-]+)(?:\s+|$)/;

/** Parses `Bearer realm="https://a/token",service="reg",scope="repository:x:pull"` (several challenges allowed). */
export function parseAuthChallenges(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  let rest = header.trim();
  while (rest.length > 0) {
    const param = PARAM.exec(rest);
    if (param && challenges.length > 0) {
      const value = param[2] !== undefined ? param[2].replace(/\\(.)/g, "$1") : (param[3] ?? "");
      challenges[challenges.length - 1]!.params[param[1]!.toLowerCase()] = value;
      rest = rest.slice(param[0].length);
      continue;
    }
    const scheme = SCHEME.exec(rest);
    if (scheme) {
      challenges.push({ scheme: scheme[1]!.toLowerCase(), params: {} });
      rest = rest.slice(scheme[0].length);
      continue;
    }
    rest = rest.slice(1).trimStart();
  }
  return challenges;
}
