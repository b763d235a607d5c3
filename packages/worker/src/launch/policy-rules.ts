import { IiiError } from "../errors.js";

/** The network policy rule shape of @iii/network (kept structural so the state model has no dependency on it). */
export interface PolicyRule {
  action: "allow" | "deny";
  cidr?: string;
  domain?: string;
  ports?: number | [number, number];
  protocol?: "tcp" | "udp" | "any";
  name: string;
}

const IPV4_CIDR = /^(\d{1,3}\.){3}\d{1,3}(\/\d{1,2})?$/;
const DOMAIN = /^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i;

/**
 * Parses a rule of `iii.workers.yaml`'s `network.allow`/`network.deny`: `[tcp/|udp/]TARGET[:PORT[-PORT]]`, TARGET
 * an IPv4 address, a CIDR, a domain or `*.domain`. Examples: `10.1.0.0/16`, `tcp/db.internal:5432`,
 * `*.example.com`, `udp/192.168.1.9:5000-5010`.
 */
export function parsePolicyRule(text: string, action: "allow" | "deny"): PolicyRule {
  const fail = (why: string): never => {
    throw new IiiError("InvalidOption", `invalid network ${action} rule "${text}": ${why}`);
  };
  let rest = text.trim();
  let protocol: PolicyRule["protocol"] = "any";
  const slash = /^(tcp|udp)\//.exec(rest);
  if (slash) {
    protocol = slash[1] as "tcp" | "udp";
    rest = rest.slice(slash[0].length);
  }
  let ports: PolicyRule["ports"];
  const portMatch = /:(\d+)(?:-(\d+))?$/.exec(rest);
  if (portMatch) {
    const lo = Number(portMatch[1]);
    const hi = portMatch[2] === undefined ? lo : Number(portMatch[2]);
    if (lo < 1 || hi > 65535 || lo > hi) fail("ports must be 1-65535, low to high");
    ports = lo === hi ? lo : [lo, hi];
    rest = rest.slice(0, portMatch.index);
  }
  const rule: PolicyRule = { action, protocol, name: `${action} ${text}` };
  if (ports !== undefined) rule.ports = ports;
  if (IPV4_CIDR.test(rest)) rule.cidr = rest;
  else if (DOMAIN.test(rest)) rule.domain = rest.toLowerCase();
  else fail("expected an IPv4 address, a CIDR or a domain");
  return rule;
}

/** Deny rules first, so a worker's deny always wins over its allow. */
export function policyRules(network: { allow: string[]; deny: string[] }): PolicyRule[] {
  return [...network.deny.map((r) => parsePolicyRule(r, "deny")), ...network.allow.map((r) => parsePolicyRule(r, "allow"))];
}
