import { NetworkError } from "../errors.js";
import { ipToString } from "../wire/ip-address.js";
import { type Cidr, cidrContains, parseCidr } from "./cidr.js";

export type Protocol = "tcp" | "udp";

export interface EgressRule {
  action: "allow" | "deny";
  /** IPv4 CIDR ("10.0.0.0/8") or a single address. */
  cidr?: string;
  /** Domain name; "*.example.com" matches subdomains. Binds the IPs the DNS interceptor resolved for it. */
  domain?: string;
  /** Single port or inclusive range. */
  ports?: number | [number, number];
  protocol?: Protocol | "any";
  /** Shown in log lines and denial events; defaults to a description of the rule. */
  name?: string;
}

export interface EgressPolicyOptions {
  /** Host loopback ports the guest may reach through the gateway address (default: the engine port 49134). */
  hostPorts?: number[];
  /** Rules evaluated in order; the first match decides. */
  rules?: EgressRule[];
  /** What happens to public addresses no rule matched (default "allow"). */
  defaultAction?: "allow" | "deny";
}

export interface PolicyDecision {
  allowed: boolean;
  /** The rule that decided, e.g. "builtin:link-local-metadata" or "rule[2] allow domain example.com". */
  rule: string;
  /** Address and port to dial on the host (the gateway maps to 127.0.0.1). */
  dialHost: string;
  dialPort: number;
}

export const DEFAULT_ENGINE_PORT = 49134;

const METADATA = ["169.254.0.0/16", "100.100.100.200/32"].map(parseCidr);
const LOOPBACK = parseCidr("127.0.0.0/8");
/** Non-public ranges denied by default unless a rule allows them (RFC 6890 special-purpose registry, abridged). */
const PRIVATE = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "192.0.0.0/24",
  "198.18.0.0/15",
  "224.0.0.0/4",
  "240.0.0.0/4",
].map(parseCidr);

interface CompiledRule {
  rule: EgressRule;
  label: string;
  cidr: Cidr | undefined;
  portLo: number;
  portHi: number;
  protocol: Protocol | "any";
  domain: string | undefined;
}

interface DomainBinding {
  expiresAt: number;
}

/**
 * Egress policy, evaluated on the address actually dialled. Pure apart from the
 * domain bindings, which the DNS interceptor feeds with what it resolved.
 */
export class EgressPolicy {
  private readonly hostPorts: Set<number>;
  private readonly rules: CompiledRule[];
  private readonly defaultAction: "allow" | "deny";
  /** rule index → ip → binding */
  private readonly bindings = new Map<number, Map<number, DomainBinding>>();
  private readonly now: () => number;

  constructor(options: EgressPolicyOptions = {}, now: () => number = Date.now) {
    this.now = now;
    this.hostPorts = new Set(options.hostPorts ?? [DEFAULT_ENGINE_PORT]);
    for (const p of this.hostPorts) validatePort(p);
    this.defaultAction = options.defaultAction ?? "allow";
    this.rules = (options.rules ?? []).map((rule, i) => compile(rule, i));
  }

  decide(protocol: Protocol, dstIp: number, dstPort: number, gatewayIp: number): PolicyDecision {
    const dst = ipToString(dstIp);
    if (dstIp === gatewayIp) {
      const allowed = this.hostPorts.has(dstPort);
      return {
        allowed,
        rule: allowed ? "builtin:host-port-allowed" : "builtin:host-port-not-allowed",
        dialHost: "127.0.0.1",
        dialPort: dstPort,
      };
    }
    const base = { dialHost: dst, dialPort: dstPort };
    if (METADATA.some((c) => cidrContains(c, dstIp))) return { allowed: false, rule: "builtin:link-local-metadata", ...base };
    if (cidrContains(LOOPBACK, dstIp)) return { allowed: false, rule: "builtin:loopback-only-via-gateway", ...base };
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i]!;
      if (r.protocol !== "any" && r.protocol !== protocol) continue;
      if (dstPort < r.portLo || dstPort > r.portHi) continue;
      if (r.cidr && !cidrContains(r.cidr, dstIp)) continue;
      if (r.domain !== undefined && !this.isBound(i, dstIp)) continue;
      return { allowed: r.rule.action === "allow", rule: r.label, ...base };
    }
    if (PRIVATE.some((c) => cidrContains(c, dstIp))) return { allowed: false, rule: "default:private-range", ...base };
    return { allowed: this.defaultAction === "allow", rule: `default:${this.defaultAction}`, ...base };
  }

  /** A "deny" domain rule matching `name` (the interceptor answers REFUSED), or undefined. */
  deniedDomain(name: string): string | undefined {
    const n = normalize(name);
    for (const r of this.rules) {
      if (r.domain !== undefined && r.rule.action === "deny" && r.cidr === undefined && r.rule.ports === undefined) {
        if (domainMatches(r.domain, n)) return r.label;
      }
    }
    return undefined;
  }

  /** Whether any domain rule cares about `name` (so its answers must be bound). */
  hasDomainRuleFor(name: string): boolean {
    const n = normalize(name);
    return this.rules.some((r) => r.domain !== undefined && domainMatches(r.domain, n));
  }

  /** Bind resolved IPv4 addresses of `name` (the question name; CNAME targets resolve under it) for `ttlSeconds`. */
  bindResolved(name: string, ips: number[], ttlSeconds: number): void {
    const n = normalize(name);
    const expiresAt = this.now() + Math.max(1, ttlSeconds) * 1000;
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i]!;
      if (r.domain === undefined || !domainMatches(r.domain, n)) continue;
      let m = this.bindings.get(i);
      if (!m) {
        m = new Map();
        this.bindings.set(i, m);
      }
      for (const ip of ips) {
        const prev = m.get(ip);
        if (!prev || prev.expiresAt < expiresAt) m.set(ip, { expiresAt });
      }
    }
  }

  private isBound(ruleIndex: number, ip: number): boolean {
    const b = this.bindings.get(ruleIndex)?.get(ip);
    if (!b) return false;
    if (b.expiresAt < this.now()) {
      this.bindings.get(ruleIndex)?.delete(ip);
      return false;
    }
    return true;
  }
}

function compile(rule: EgressRule, i: number): CompiledRule {
  if (rule.action !== "allow" && rule.action !== "deny") {
    throw new NetworkError("InvalidConfig", `rule[${i}]: action must be "allow" or "deny"`);
  }
  let portLo = 0;
  let portHi = 65535;
  if (typeof rule.ports === "number") {
    validatePort(rule.ports);
    portLo = portHi = rule.ports;
  } else if (Array.isArray(rule.ports)) {
    [portLo, portHi] = rule.ports;
    validatePort(portLo);
    validatePort(portHi);
    if (portLo > portHi) throw new NetworkError("InvalidConfig", `rule[${i}]: port range ${portLo}-${portHi} is empty`);
  }
  const parts: string[] = [rule.action];
  if (rule.cidr) parts.push(`cidr ${rule.cidr}`);
  if (rule.domain) parts.push(`domain ${rule.domain}`);
  if (rule.ports !== undefined) parts.push(`ports ${portLo}-${portHi}`);
  if (rule.protocol && rule.protocol !== "any") parts.push(rule.protocol);
  return {
    rule,
    label: rule.name ?? `rule[${i}] ${parts.join(" ")}`,
    cidr: rule.cidr ? parseCidr(rule.cidr) : undefined,
    portLo,
    portHi,
    protocol: rule.protocol ?? "any",
    domain: rule.domain ? normalize(rule.domain) : undefined,
  };
}

function validatePort(p: number): void {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new NetworkError("InvalidConfig", `invalid port ${p}`);
}

function normalize(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function domainMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith("*.")) {
    const suffix = pattern.slice(1);
    return name.endsWith(suffix);
  }
  return pattern === name;
}
