import { networkInterfaces } from "node:os";
import { NetworkError } from "../errors.js";
import { ipToString, parseIp } from "../wire/ip-address.js";
import { type Cidr, cidrContains, parseCidr } from "./cidr.js";
import { SPECIAL_IPV4_RANGES, SPECIAL_IPV6_RANGES, type SpecialRange } from "./special-ranges.js";

export type Protocol = "tcp" | "udp";

/**
 * `public` (default): the public internet is allowed, everything in the builtin deny list is not.
 * `none`: nothing but what allow rules open (and the gateway's `hostPorts`); DNS answers only
 * names an allow domain rule names.
 */
export type NetworkMode = "public" | "none";

export interface EgressRule {
  action: "allow" | "deny";
  /** IPv4 CIDR ("10.0.0.0/8") or a single address. IPv6 is rejected (InvalidConfig). */
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
  /** Default "public". */
  mode?: NetworkMode;
  /** Host loopback ports the guest may reach through the gateway address (default: the engine port 49134). */
  hostPorts?: number[];
  /** Rules in any order: the most specific matching rule decides, deny wins ties (see README). */
  rules?: EgressRule[];
  /** @deprecated use `mode`: "allow" = "public", "deny" = "none". */
  defaultAction?: "allow" | "deny";
  /** Source of the host's own addresses (default: every IPv4 address of `os.networkInterfaces()`). */
  hostAddresses?: () => string[];
  /** How old the host address list may get before a decision re-reads it (default 1000 ms). */
  hostAddressRefreshMs?: number;
}

export interface PolicyDecision {
  allowed: boolean;
  /** The rule that decided, e.g. "builtin:link-local (169.254.0.0/16)" or the rule's name. */
  rule: string;
  /** Address and port to dial on the host (the gateway maps to 127.0.0.1). */
  dialHost: string;
  dialPort: number;
}

/** One rule of the effective policy, as shown by `describe()`. */
export interface DescribedRule {
  source: "rule" | "builtin";
  action: "allow" | "deny";
  label: string;
  cidr?: string;
  domain?: string;
  ports?: [number, number];
  protocol: Protocol | "any";
  /** Human-readable rank, e.g. "/24", "/32 (exact domain)", "/32 (*.example.com)". */
  specificity: string;
  /** Pinned builtins are opened only by a more specific CIDR allow rule, never by a domain rule. */
  pinned?: boolean;
}

export interface PolicyDescription {
  mode: NetworkMode;
  /** Host loopback ports reachable at the gateway address. */
  hostPorts: number[];
  /** Every rule (user and builtin, host addresses included), most specific first. */
  rules: DescribedRule[];
  builtinRanges: { ipv4: SpecialRange[]; ipv6: SpecialRange[] };
  /** The host's own IPv4 addresses (and subnet broadcasts) denied as /32, as last read. */
  hostAddresses: string[];
  precedence: string;
}

export const DEFAULT_ENGINE_PORT = 49134;

export const PRECEDENCE_TEXT =
  "most specific rule wins: longest prefix (a domain rule counts as /32 for each address it resolved; " +
  "at /32 an address or exact domain outranks a wildcard domain, a longer wildcard outranks a shorter one), " +
  "then the narrower port range, then a protocol-specific rule; at equal specificity deny wins. " +
  "Builtin denies are rules with their own prefix; pinned ones (host addresses, loopback, link-local, " +
  "metadata, multicast, reserved) are not opened by domain rules.";

/** Rank of an address or exact domain at /32; wildcards rank by their label count (always lower). */
const EXACT_RANK = 1000;

interface CompiledRule {
  index: number;
  source: "rule" | "builtin";
  action: "allow" | "deny";
  label: string;
  cidr: Cidr | undefined;
  portLo: number;
  portHi: number;
  protocol: Protocol | "any";
  domain: string | undefined;
  /** Address prefix length (domain rules: 32). */
  prefix: number;
  nameRank: number;
  pinned: boolean;
}

interface DomainBinding {
  expiresAt: number;
}

const BUILTIN_RULES: CompiledRule[] = SPECIAL_IPV4_RANGES.map((r) => builtin(`builtin:${r.name} (${r.cidr})`, r.cidr, r.pinned, "deny"));
const PUBLIC_RULE = builtin("builtin:public-internet (0.0.0.0/0)", "0.0.0.0/0", false, "allow");

function builtin(label: string, cidr: string, pinned: boolean, action: "allow" | "deny"): CompiledRule {
  const c = parseCidr(cidr);
  return { index: -1, source: "builtin", action, label, cidr: c, portLo: 0, portHi: 65535, protocol: "any", domain: undefined, prefix: c.prefix, nameRank: EXACT_RANK, pinned };
}

/** Every IPv4 address of every interface, plus each subnet's directed broadcast. */
export function readHostAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family !== "IPv4") continue;
      out.add(a.address);
      const ip = parseIp(a.address);
      const mask = parseIp(a.netmask);
      if (ip !== undefined && mask !== undefined && mask !== 0xffffffff && mask !== 0xfffffffe) out.add(ipToString((ip | ~mask) >>> 0));
    }
  }
  return [...out];
}

/**
 * Egress policy, evaluated on the address actually dialled. Pure apart from the domain bindings,
 * which the DNS interceptor feeds with what it resolved, and the host address list, re-read
 * when older than `hostAddressRefreshMs`.
 */
export class EgressPolicy {
  readonly mode: NetworkMode;
  private readonly hostPorts: Set<number>;
  private readonly rules: CompiledRule[];
  /** user rules + builtin ranges (+ public-internet), in precedence order. */
  private readonly staticRules: CompiledRule[];
  /** rule index → ip → binding */
  private readonly bindings = new Map<number, Map<number, DomainBinding>>();
  private readonly now: () => number;
  private readonly readHost: () => string[];
  private readonly hostRefreshMs: number;
  private hostRules: CompiledRule[] = [];
  private hostIps = new Set<number>();
  private hostReadAt = Number.NEGATIVE_INFINITY;

  constructor(options: EgressPolicyOptions = {}, now: () => number = Date.now) {
    this.now = now;
    if (options.mode !== undefined && options.mode !== "public" && options.mode !== "none") {
      throw new NetworkError("InvalidConfig", `network mode must be "public" or "none", not ${JSON.stringify(options.mode)}`);
    }
    if (options.defaultAction !== undefined && options.defaultAction !== "allow" && options.defaultAction !== "deny") {
      throw new NetworkError("InvalidConfig", `defaultAction must be "allow" or "deny"`);
    }
    const legacy = options.defaultAction === undefined ? undefined : options.defaultAction === "allow" ? "public" : "none";
    if (options.mode !== undefined && legacy !== undefined && options.mode !== legacy) {
      throw new NetworkError("InvalidConfig", `mode "${options.mode}" contradicts defaultAction "${options.defaultAction}"`);
    }
    this.mode = options.mode ?? legacy ?? "public";
    this.hostPorts = new Set(options.hostPorts ?? [DEFAULT_ENGINE_PORT]);
    for (const p of this.hostPorts) validatePort(p);
    this.rules = (options.rules ?? []).map((rule, i) => compile(rule, i));
    this.staticRules = [...this.rules, ...BUILTIN_RULES, ...(this.mode === "public" ? [PUBLIC_RULE] : [])].sort(compareRules);
    this.readHost = options.hostAddresses ?? readHostAddresses;
    this.hostRefreshMs = options.hostAddressRefreshMs ?? 1000;
    this.refreshHostAddresses();
  }

  /** Re-reads the host's addresses now (decisions also do it when the list is older than the refresh interval). */
  refreshHostAddresses(): void {
    const ips = new Set<number>();
    for (const a of this.readHost()) {
      const ip = parseIp(a);
      if (ip !== undefined) ips.add(ip);
    }
    this.hostReadAt = this.now();
    if (ips.size === this.hostIps.size && [...ips].every((ip) => this.hostIps.has(ip))) return;
    this.hostIps = ips;
    this.hostRules = [...ips].map((ip) => builtin(`builtin:host-address (${ipToString(ip)}/32)`, `${ipToString(ip)}/32`, true, "deny"));
  }

  decide(protocol: Protocol, dstIp: number, dstPort: number, gatewayIp: number): PolicyDecision {
    if (dstIp === gatewayIp) {
      const allowed = this.hostPorts.has(dstPort);
      return {
        allowed,
        rule: allowed ? "builtin:host-port-allowed" : "builtin:host-port-not-allowed",
        dialHost: "127.0.0.1",
        dialPort: dstPort,
      };
    }
    const t = this.now();
    if (t - this.hostReadAt >= this.hostRefreshMs || t < this.hostReadAt) this.refreshHostAddresses();
    const base = { dialHost: ipToString(dstIp), dialPort: dstPort };
    const best = this.bestMatch(protocol, dstIp, dstPort);
    if (!best) return { allowed: false, rule: "default:mode-none", ...base };
    return { allowed: best.action === "allow", rule: best.label, ...base };
  }

  private bestMatch(protocol: Protocol, dstIp: number, dstPort: number): CompiledRule | undefined {
    const matches = (r: CompiledRule): boolean => {
      if (r.protocol !== "any" && r.protocol !== protocol) return false;
      if (dstPort < r.portLo || dstPort > r.portHi) return false;
      if (r.cidr && !cidrContains(r.cidr, dstIp)) return false;
      if (r.domain !== undefined && !this.isBound(r.index, dstIp)) return false;
      return true;
    };
    // Host addresses are /32 pinned denies; they rank with the static list.
    let best: CompiledRule | undefined;
    for (const r of this.hostRules) if (matches(r)) best = pick(best, r);
    for (const r of this.staticRules) if (matches(r)) best = pick(best, r);
    if (best && best.domain !== undefined) {
      // A domain rule never opens a pinned range: decide among the rules without domains.
      const pinned = this.hostIps.has(dstIp) || BUILTIN_RULES.some((b) => b.pinned && cidrContains(b.cidr!, dstIp));
      if (pinned) {
        let noDomain: CompiledRule | undefined;
        for (const r of this.hostRules) if (matches(r)) noDomain = pick(noDomain, r);
        for (const r of this.staticRules) if (r.domain === undefined && matches(r)) noDomain = pick(noDomain, r);
        return noDomain;
      }
    }
    return best;
  }

  /**
   * Why the interceptor must answer REFUSED for `name`, or undefined to resolve it. Public mode:
   * the most specific domain rule naming it is a deny rule for every port. Mode none: also when
   * no allow domain rule names it (so DNS is no channel out).
   */
  refusedName(name: string): string | undefined {
    const n = normalize(name);
    let best: CompiledRule | undefined;
    let anyAllow = false;
    for (const r of this.rules) {
      if (r.domain === undefined || !domainMatches(r.domain, n)) continue;
      if (r.action === "allow") anyAllow = true;
      const wholeName = r.action === "allow" || (r.cidr === undefined && r.portLo === 0 && r.portHi === 65535 && r.protocol === "any");
      if (!wholeName) continue;
      if (!best || r.nameRank > best.nameRank || (r.nameRank === best.nameRank && r.action === "deny" && best.action === "allow")) best = r;
    }
    if (best?.action === "deny") return best.label;
    if (this.mode === "none" && !anyAllow) return "mode:none (no allow rule names it)";
    return undefined;
  }

  /** @deprecated use refusedName(), which also covers mode "none". */
  deniedDomain(name: string): string | undefined {
    return this.refusedName(name);
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
    for (const r of this.rules) {
      if (r.domain === undefined || !domainMatches(r.domain, n)) continue;
      let m = this.bindings.get(r.index);
      if (!m) {
        m = new Map();
        this.bindings.set(r.index, m);
      }
      for (const ip of ips) {
        const prev = m.get(ip);
        if (!prev || prev.expiresAt < expiresAt) m.set(ip, { expiresAt });
      }
    }
  }

  /** The effective policy as data (for `status` / `list --json`). */
  describe(): PolicyDescription {
    const all = [...this.hostRules, ...this.staticRules].sort(compareRules);
    return {
      mode: this.mode,
      hostPorts: [...this.hostPorts].sort((a, b) => a - b),
      rules: all.map((r) => {
        const d: DescribedRule = { source: r.source, action: r.action, label: r.label, protocol: r.protocol, specificity: specificityText(r) };
        if (r.cidr) d.cidr = r.cidr.text;
        if (r.domain !== undefined) d.domain = r.domain;
        if (r.portLo !== 0 || r.portHi !== 65535) d.ports = [r.portLo, r.portHi];
        if (r.source === "builtin" && r.action === "deny") d.pinned = r.pinned;
        return d;
      }),
      builtinRanges: { ipv4: SPECIAL_IPV4_RANGES.map((r) => ({ ...r })), ipv6: SPECIAL_IPV6_RANGES.map((r) => ({ ...r })) },
      hostAddresses: [...this.hostIps].map(ipToString),
      precedence: PRECEDENCE_TEXT,
    };
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

/** Negative when `a` takes precedence over `b`. */
function compareRules(a: CompiledRule, b: CompiledRule): number {
  return (
    b.prefix - a.prefix ||
    b.nameRank - a.nameRank ||
    a.portHi - a.portLo - (b.portHi - b.portLo) ||
    (b.protocol === "any" ? 0 : 1) - (a.protocol === "any" ? 0 : 1) ||
    (a.action === "deny" ? 0 : 1) - (b.action === "deny" ? 0 : 1) ||
    (a.source === "rule" ? 0 : 1) - (b.source === "rule" ? 0 : 1)
  );
}

function pick(best: CompiledRule | undefined, r: CompiledRule): CompiledRule {
  return !best || compareRules(r, best) < 0 ? r : best;
}

function specificityText(r: CompiledRule): string {
  let s = `/${r.prefix}`;
  if (r.domain !== undefined) s += r.domain.startsWith("*.") ? ` (${r.domain})` : " (exact domain)";
  if (r.portLo !== 0 || r.portHi !== 65535) s += ` ports ${r.portLo}-${r.portHi}`;
  if (r.protocol !== "any") s += ` ${r.protocol}`;
  return s;
}

function compile(rule: EgressRule, i: number): CompiledRule {
  if (rule.action !== "allow" && rule.action !== "deny") {
    throw new NetworkError("InvalidConfig", `rule[${i}]: action must be "allow" or "deny"`);
  }
  if (rule.protocol !== undefined && rule.protocol !== "any" && rule.protocol !== "tcp" && rule.protocol !== "udp") {
    throw new NetworkError("InvalidConfig", `rule[${i}]: protocol must be "tcp", "udp" or "any"`);
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
  let cidr: Cidr | undefined;
  try {
    cidr = rule.cidr ? parseCidr(rule.cidr) : undefined;
  } catch (err) {
    throw new NetworkError("InvalidConfig", `rule[${i}]: ${(err as Error).message}`, { cause: err });
  }
  const domain = rule.domain ? normalize(rule.domain) : undefined;
  if (domain !== undefined && !/^(\*\.)?[a-z0-9_]([a-z0-9_-]*)(\.[a-z0-9_-]+)*$/.test(domain)) {
    throw new NetworkError("InvalidConfig", `rule[${i}]: invalid domain "${rule.domain}"`);
  }
  const parts: string[] = [rule.action];
  if (rule.cidr) parts.push(`cidr ${rule.cidr}`);
  if (rule.domain) parts.push(`domain ${rule.domain}`);
  if (rule.ports !== undefined) parts.push(`ports ${portLo}-${portHi}`);
  if (rule.protocol && rule.protocol !== "any") parts.push(rule.protocol);
  return {
    index: i,
    source: "rule",
    action: rule.action,
    label: rule.name ?? `rule[${i}] ${parts.join(" ")}`,
    cidr,
    portLo,
    portHi,
    protocol: rule.protocol ?? "any",
    domain,
    prefix: domain !== undefined ? 32 : (cidr?.prefix ?? 0),
    nameRank: domain === undefined || !domain.startsWith("*.") ? EXACT_RANK : domain.split(".").length - 1,
    pinned: false,
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
