import { describe, expect, test } from "vitest";
import { NetworkError } from "../errors.js";
import { parseIp } from "../wire/ip-address.js";
import { EgressPolicy, type EgressPolicyOptions, type EgressRule, readHostAddresses } from "./egress-policy.js";
import { SPECIAL_IPV4_RANGES, SPECIAL_IPV6_RANGES, specialIpv6Range } from "./special-ranges.js";

const GW = parseIp("100.96.0.1")!;
const ip = (s: string) => parseIp(s)!;
/** A policy whose host has exactly these addresses (public-looking, so only host enumeration covers them). */
const HOST = ["127.0.0.1", "93.184.216.10", "93.184.216.255"];
const policy = (o: EgressPolicyOptions = {}, now?: () => number) => new EgressPolicy({ hostAddresses: () => HOST, ...o }, now);
const verdict = (p: EgressPolicy, a: string, port = 443, proto: "tcp" | "udp" = "tcp") => {
  const d = p.decide(proto, ip(a), port, GW);
  return `${d.allowed ? "allow" : "deny"} ${d.rule}`;
};

/** One address inside each IPv4 special-purpose range, with the label that must refuse it. */
const SPECIAL_SAMPLES: Array<[string, string]> = [
  ["0.1.2.3", "builtin:this-network (0.0.0.0/8)"],
  ["0.0.0.0", "builtin:this-network (0.0.0.0/8)"],
  ["10.1.2.3", "builtin:private-10 (10.0.0.0/8)"],
  ["100.64.0.1", "builtin:shared-address-space (100.64.0.0/10)"],
  ["100.96.0.6", "builtin:shared-address-space (100.64.0.0/10)"],
  ["100.127.255.254", "builtin:shared-address-space (100.64.0.0/10)"],
  ["100.100.100.200", "builtin:metadata (100.100.100.200/32)"],
  ["127.0.0.2", "builtin:loopback (127.0.0.0/8)"],
  ["127.255.0.9", "builtin:loopback (127.0.0.0/8)"],
  ["169.254.169.254", "builtin:link-local (169.254.0.0/16)"],
  ["172.16.5.4", "builtin:private-172 (172.16.0.0/12)"],
  ["172.31.255.1", "builtin:private-172 (172.16.0.0/12)"],
  ["192.0.0.9", "builtin:ietf-protocol-assignments (192.0.0.0/24)"],
  ["192.0.2.7", "builtin:documentation (192.0.2.0/24)"],
  ["192.31.196.1", "builtin:amt (192.31.196.0/24)"],
  ["192.52.193.1", "builtin:as112-v4 (192.52.193.0/24)"],
  ["192.88.99.1", "builtin:6to4-relay-anycast (192.88.99.0/24)"],
  ["192.168.1.1", "builtin:private-192 (192.168.0.0/16)"],
  ["192.175.48.1", "builtin:direct-delegation-as112 (192.175.48.0/24)"],
  ["198.18.0.1", "builtin:benchmarking (198.18.0.0/15)"],
  ["198.19.255.1", "builtin:benchmarking (198.18.0.0/15)"],
  ["198.51.100.7", "builtin:documentation (198.51.100.0/24)"],
  ["203.0.113.7", "builtin:documentation (203.0.113.0/24)"],
  ["224.0.0.251", "builtin:multicast (224.0.0.0/4)"],
  ["239.255.255.250", "builtin:multicast (224.0.0.0/4)"],
  ["240.0.0.1", "builtin:reserved (240.0.0.0/4)"],
  ["255.255.255.254", "builtin:reserved (240.0.0.0/4)"],
  ["255.255.255.255", "builtin:limited-broadcast (255.255.255.255/32)"],
];

describe("EgressPolicy: builtin denies (mode public)", () => {
  test("every special-purpose range is refused, naming the range", () => {
    const p = policy();
    for (const [a, label] of SPECIAL_SAMPLES) {
      expect(verdict(p, a), a).toBe(`deny ${label}`);
      expect(verdict(p, a, 53, "udp"), a).toBe(`deny ${label}`);
    }
    // Every registry entry has a sample.
    const covered = new Set(SPECIAL_SAMPLES.map(([, l]) => l));
    for (const r of SPECIAL_IPV4_RANGES) expect(covered.has(`builtin:${r.name} (${r.cidr})`), r.cidr).toBe(true);
  });

  test("addresses just outside the special ranges are public", () => {
    const p = policy();
    for (const a of ["1.0.0.1", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255", "128.0.0.0", "169.253.255.255", "172.15.255.255", "172.32.0.0", "192.0.1.255", "192.0.3.0", "192.167.255.255", "192.169.0.0", "198.17.255.255", "198.20.0.0", "198.51.99.255", "203.0.112.255", "223.255.255.255"]) {
      expect(verdict(p, a), a).toBe("allow builtin:public-internet (0.0.0.0/0)");
    }
  });

  test("the host's own addresses (and subnet broadcast) are refused even though they are public", () => {
    const p = policy();
    expect(verdict(p, "93.184.216.10")).toBe("deny builtin:host-address (93.184.216.10/32)");
    expect(verdict(p, "93.184.216.255")).toBe("deny builtin:host-address (93.184.216.255/32)");
    expect(verdict(p, "93.184.216.11")).toBe("allow builtin:public-internet (0.0.0.0/0)");
    // Even a broad or /24 allow does not open them; only a port-specific /32 CIDR allow would.
    const q = policy({ rules: [{ action: "allow", cidr: "0.0.0.0/0" }, { action: "allow", cidr: "93.184.216.0/24" }, { action: "allow", cidr: "93.184.216.10/32" }] });
    expect(verdict(q, "93.184.216.10")).toBe("deny builtin:host-address (93.184.216.10/32)");
  });

  test("the host address list is re-read when it is older than the refresh interval", () => {
    let now = 0;
    let addrs = ["127.0.0.1"];
    const p = new EgressPolicy({ hostAddresses: () => addrs, hostAddressRefreshMs: 1000 }, () => now);
    expect(verdict(p, "8.8.4.4")).toBe("allow builtin:public-internet (0.0.0.0/0)");
    addrs = ["127.0.0.1", "8.8.4.4"];
    now = 1000;
    expect(verdict(p, "8.8.4.4")).toBe("deny builtin:host-address (8.8.4.4/32)");
    expect(p.describe().hostAddresses).toEqual(["127.0.0.1", "8.8.4.4"]);
  });

  test("the default host address source lists this machine's IPv4 addresses", () => {
    const addrs = readHostAddresses();
    expect(addrs).toContain("127.0.0.1");
    const p = new EgressPolicy();
    for (const a of addrs) expect(p.decide("tcp", ip(a), 80, GW).allowed, a).toBe(false);
  });

  test("gateway: only hostPorts, dialled on 127.0.0.1; rules do not open other gateway ports", () => {
    const p = policy({ hostPorts: [5000], rules: [{ action: "allow", cidr: "100.96.0.1/32" }] });
    expect(p.decide("tcp", GW, 5000, GW)).toMatchObject({ allowed: true, dialHost: "127.0.0.1", dialPort: 5000, rule: "builtin:host-port-allowed" });
    expect(p.decide("tcp", GW, 49134, GW)).toMatchObject({ allowed: false, rule: "builtin:host-port-not-allowed" });
    expect(p.decide("udp", GW, 5001, GW).allowed).toBe(false);
    expect(policy().decide("tcp", GW, 49134, GW).allowed).toBe(true);
  });
});

describe("EgressPolicy: precedence", () => {
  const orders = (rules: EgressRule[]) => [rules, [...rules].reverse()];

  test("rule order does not matter: allow example.org:443 + deny 0.0.0.0/0", () => {
    for (const rules of orders([
      { action: "deny", cidr: "0.0.0.0/0", name: "deny all" },
      { action: "allow", domain: "example.org", ports: 443, name: "allow example.org:443" },
    ])) {
      const p = policy({ rules });
      p.bindResolved("example.org", [ip("93.184.216.34")], 60);
      expect(verdict(p, "93.184.216.34", 443)).toBe("allow allow example.org:443");
      expect(verdict(p, "93.184.216.34", 80)).toBe("deny deny all");
      expect(verdict(p, "1.1.1.1", 443)).toBe("deny deny all");
      expect(p.refusedName("example.org")).toBeUndefined();
    }
  });

  test("longest prefix wins; equal specificity: deny wins", () => {
    for (const rules of orders([
      { action: "deny", cidr: "8.0.0.0/8", name: "deny 8/8" },
      { action: "allow", cidr: "8.8.0.0/16", name: "allow 8.8/16" },
      { action: "deny", cidr: "8.8.8.0/24", name: "deny 8.8.8/24" },
      { action: "allow", cidr: "8.8.8.8/32", name: "allow 8.8.8.8" },
    ])) {
      const p = policy({ rules });
      expect(verdict(p, "8.1.1.1")).toBe("deny deny 8/8");
      expect(verdict(p, "8.8.4.4")).toBe("allow allow 8.8/16");
      expect(verdict(p, "8.8.8.9")).toBe("deny deny 8.8.8/24");
      expect(verdict(p, "8.8.8.8")).toBe("allow allow 8.8.8.8");
    }
    for (const rules of orders([{ action: "allow", cidr: "9.9.0.0/16", name: "a" }, { action: "deny", cidr: "9.9.0.0/16", name: "d" }])) {
      expect(verdict(policy({ rules }), "9.9.9.9")).toBe("deny d");
    }
    // A domain counts as /32: it ties with a /32 address rule, and deny wins.
    for (const rules of orders([{ action: "allow", domain: "x.example", name: "a" }, { action: "deny", cidr: "9.9.9.9", name: "d" }])) {
      const p = policy({ rules });
      p.bindResolved("x.example", [ip("9.9.9.9")], 60);
      expect(verdict(p, "9.9.9.9")).toBe("deny d");
    }
  });

  test("at the same prefix the narrower port range, then a protocol-specific rule, wins", () => {
    for (const rules of orders([
      { action: "deny", cidr: "0.0.0.0/0", name: "deny all" },
      { action: "allow", cidr: "0.0.0.0/0", ports: [443, 443], name: "allow :443" },
      { action: "deny", cidr: "0.0.0.0/0", ports: 443, protocol: "udp", name: "deny udp :443" },
    ])) {
      const p = policy({ rules });
      expect(verdict(p, "1.1.1.1", 443)).toBe("allow allow :443");
      expect(verdict(p, "1.1.1.1", 443, "udp")).toBe("deny deny udp :443");
      expect(verdict(p, "1.1.1.1", 80)).toBe("deny deny all");
      // A /0 allow never opens a special range.
      expect(verdict(p, "10.0.0.1", 443)).toBe("deny builtin:private-10 (10.0.0.0/8)");
    }
  });

  test("exact domain beats wildcard; longer wildcard beats shorter", () => {
    for (const rules of orders([
      { action: "deny", domain: "*.example.com", name: "deny *.example.com" },
      { action: "allow", domain: "*.api.example.com", name: "allow *.api.example.com" },
      { action: "deny", domain: "bad.api.example.com", name: "deny bad.api" },
      { action: "allow", domain: "www.example.com", name: "allow www" },
    ])) {
      const p = policy({ rules, mode: "none" });
      const bind = (n: string, a: string) => p.bindResolved(n, [ip(a)], 60);
      bind("www.example.com", "1.0.0.1");
      bind("x.api.example.com", "1.0.0.2");
      bind("bad.api.example.com", "1.0.0.3");
      bind("other.example.com", "1.0.0.4");
      expect(verdict(p, "1.0.0.1")).toBe("allow allow www");
      expect(verdict(p, "1.0.0.2")).toBe("allow allow *.api.example.com");
      expect(verdict(p, "1.0.0.3")).toBe("deny deny bad.api");
      expect(verdict(p, "1.0.0.4")).toBe("deny deny *.example.com");
      expect(p.refusedName("www.example.com")).toBeUndefined();
      expect(p.refusedName("x.api.example.com")).toBeUndefined();
      expect(p.refusedName("bad.api.example.com")).toBe("deny bad.api");
      expect(p.refusedName("other.example.com")).toBe("deny *.example.com");
    }
  });

  test("an explicit, more specific allow opens a special range; an equal or broader one does not", () => {
    const p = policy({ rules: [{ action: "allow", cidr: "10.1.0.0/16", ports: [8000, 8999], protocol: "tcp" }, { action: "allow", cidr: "172.16.0.0/12" }, { action: "allow", cidr: "0.0.0.0/0" }] });
    expect(verdict(p, "10.1.2.3", 8080)).toBe("allow rule[0] allow cidr 10.1.0.0/16 ports 8000-8999 tcp");
    expect(verdict(p, "10.1.2.3", 8080, "udp")).toBe("deny builtin:private-10 (10.0.0.0/8)");
    expect(verdict(p, "10.1.2.3", 9000)).toBe("deny builtin:private-10 (10.0.0.0/8)");
    expect(verdict(p, "10.2.0.1", 8080)).toBe("deny builtin:private-10 (10.0.0.0/8)");
    expect(verdict(p, "172.16.0.1")).toBe("deny builtin:private-172 (172.16.0.0/12)");
    expect(verdict(p, "127.0.0.2")).toBe("deny builtin:loopback (127.0.0.0/8)");
    expect(verdict(p, "169.254.169.254", 80)).toBe("deny builtin:link-local (169.254.0.0/16)");
  });

  test("a domain rule opens a private range for what it resolved, but never a pinned one (rebinding)", () => {
    const p = policy({ mode: "none", rules: [{ action: "allow", domain: "db.internal", ports: 5432, name: "allow db" }] });
    p.bindResolved("db.internal", [ip("10.1.2.3"), ip("127.0.0.2"), ip("169.254.169.254"), ip("93.184.216.10"), ip("100.100.100.200")], 60);
    expect(verdict(p, "10.1.2.3", 5432)).toBe("allow allow db");
    expect(verdict(p, "10.1.2.3", 5433)).toBe("deny builtin:private-10 (10.0.0.0/8)");
    expect(verdict(p, "127.0.0.2", 5432)).toBe("deny builtin:loopback (127.0.0.0/8)");
    expect(verdict(p, "169.254.169.254", 5432)).toBe("deny builtin:link-local (169.254.0.0/16)");
    expect(verdict(p, "100.100.100.200", 5432)).toBe("deny builtin:metadata (100.100.100.200/32)");
    expect(verdict(p, "93.184.216.10", 5432)).toBe("deny builtin:host-address (93.184.216.10/32)");
  });

  test("public + deny CIDR denies only that range", () => {
    const p = policy({ rules: [{ action: "deny", cidr: "1.2.3.0/24", name: "deny 1.2.3/24" }] });
    expect(verdict(p, "1.2.3.4")).toBe("deny deny 1.2.3/24");
    expect(verdict(p, "1.2.4.4")).toBe("allow builtin:public-internet (0.0.0.0/0)");
  });
});

describe("EgressPolicy: modes and DNS", () => {
  test("mode none: nothing but allow rules and host ports", () => {
    const p = policy({ mode: "none", hostPorts: [7000], rules: [{ action: "allow", cidr: "1.1.1.0/24", ports: 443 }] });
    expect(verdict(p, "8.8.8.8")).toBe("deny default:mode-none");
    expect(verdict(p, "1.1.1.1", 443)).toBe("allow rule[0] allow cidr 1.1.1.0/24 ports 443-443");
    expect(verdict(p, "1.1.1.1", 80)).toBe("deny default:mode-none");
    expect(verdict(p, "10.0.0.1")).toBe("deny builtin:private-10 (10.0.0.0/8)");
    expect(p.decide("tcp", GW, 7000, GW).allowed).toBe(true);
    expect(policy({ defaultAction: "deny" }).mode).toBe("none");
    expect(() => policy({ mode: "public", defaultAction: "deny" })).toThrow(NetworkError);
  });

  test("DNS under none: only names an allow domain rule names; under public: deny domain rules only", () => {
    const none = policy({ mode: "none", rules: [{ action: "allow", domain: "allowed.test", ports: 80 }, { action: "allow", domain: "*.ok.test" }, { action: "allow", cidr: "0.0.0.0/0" }] });
    expect(none.refusedName("allowed.test.")).toBeUndefined();
    expect(none.refusedName("ALLOWED.test")).toBeUndefined();
    expect(none.refusedName("a.ok.test")).toBeUndefined();
    expect(none.refusedName("ok.test")).toBe("mode:none (no allow rule names it)");
    expect(none.refusedName("other.test")).toBe("mode:none (no allow rule names it)");
    expect(none.refusedName("exfil-4142.attacker.example")).toBe("mode:none (no allow rule names it)");
    const pub = policy({ rules: [{ action: "deny", domain: "bad.test" }, { action: "deny", domain: "smtp.test", ports: 25 }] });
    expect(pub.refusedName("BAD.test.")).toBe("rule[0] deny domain bad.test");
    expect(pub.refusedName("smtp.test")).toBeUndefined();
    expect(pub.refusedName("anything.example")).toBeUndefined();
  });

  test("domain rules bind resolved addresses until their TTL expires", () => {
    let now = 0;
    const p = policy({ mode: "none", rules: [{ action: "allow", domain: "*.example.com" }, { action: "deny", domain: "bad.example.org" }] }, () => now);
    const addr = ip("93.184.216.5");
    expect(p.decide("tcp", addr, 443, GW).allowed).toBe(false);
    expect(p.hasDomainRuleFor("api.example.com.")).toBe(true);
    p.bindResolved("api.example.com", [addr], 30);
    expect(p.decide("tcp", addr, 443, GW)).toMatchObject({ allowed: true, rule: "rule[0] allow domain *.example.com" });
    expect(p.decide("tcp", ip("93.184.216.6"), 443, GW).allowed).toBe(false);
    now = 31_000;
    expect(p.decide("tcp", addr, 443, GW).allowed).toBe(false);
    expect(p.refusedName("BAD.example.org.")).toBe("rule[1] deny domain bad.example.org");
  });

  test("describe(): mode, host ports, rules in precedence order, builtin tables, host addresses", () => {
    const p = policy({ hostPorts: [49134, 3000], rules: [{ action: "deny", cidr: "0.0.0.0/0", name: "d" }, { action: "allow", domain: "example.org", ports: 443, name: "a" }] });
    const d = p.describe();
    expect(d.mode).toBe("public");
    expect(d.hostPorts).toEqual([3000, 49134]);
    expect(d.hostAddresses).toEqual(HOST);
    const labels = d.rules.map((r) => r.label);
    expect(labels.indexOf("a")).toBeLessThan(labels.indexOf("builtin:private-10 (10.0.0.0/8)"));
    expect(labels.indexOf("d")).toBeLessThan(labels.indexOf("builtin:public-internet (0.0.0.0/0)"));
    expect(labels.indexOf("builtin:host-address (93.184.216.10/32)")).toBeLessThan(labels.indexOf("builtin:loopback (127.0.0.0/8)"));
    expect(d.rules.find((r) => r.label === "a")).toMatchObject({ source: "rule", action: "allow", domain: "example.org", ports: [443, 443], specificity: "/32 (exact domain) ports 443-443" });
    expect(d.builtinRanges.ipv4.length).toBe(SPECIAL_IPV4_RANGES.length);
    expect(d.builtinRanges.ipv6.map((r) => r.cidr)).toContain("fd00:ec2::254/128");
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
    expect(policy({ mode: "none" }).describe().rules.some((r) => r.label.startsWith("builtin:public-internet"))).toBe(false);
  });
});

describe("configuration", () => {
  test("invalid configuration throws InvalidConfig, IPv6 CIDRs with a clear message", () => {
    const code = (o: EgressPolicyOptions) => {
      try {
        new EgressPolicy(o);
        return "ok";
      } catch (e) {
        expect(e).toBeInstanceOf(NetworkError);
        return `${(e as NetworkError).code}: ${(e as Error).message}`;
      }
    };
    expect(code({ rules: [{ action: "allow", cidr: "10.0.0.0/40" }] })).toMatch(/^InvalidConfig/);
    expect(code({ hostPorts: [70000] })).toMatch(/^InvalidConfig/);
    expect(code({ mode: "open" as never })).toMatch(/^InvalidConfig/);
    expect(code({ rules: [{ action: "allow", cidr: "2001:db8::/32" }] })).toMatch(/^InvalidConfig: rule\[0\]: IPv6 CIDR "2001:db8::\/32" is not supported/);
    expect(code({ rules: [{ action: "allow", domain: "bad domain" }] })).toMatch(/^InvalidConfig/);
  });

  test("IPv6 special-purpose table", () => {
    expect(SPECIAL_IPV6_RANGES.map((r) => r.cidr)).toEqual([
      "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fd00:ec2::254/128", "fe80::/10", "ff00::/8",
    ]);
    const name = (a: string) => specialIpv6Range(a)?.name;
    expect(name("::")).toBe("unspecified");
    expect(name("::1")).toBe("loopback");
    expect(name("::ffff:127.0.0.1")).toBe("ipv4-mapped");
    expect(name("64:ff9b::a00:1")).toBe("nat64");
    expect(name("64:ff9b:1::1")).toBe("local-nat64");
    expect(name("100::1")).toBe("discard-only");
    expect(name("2001:0:1::1")).toBe("ietf-protocol-assignments");
    expect(name("2001:db8::11")).toBe("documentation");
    expect(name("fd00::2")).toBe("unique-local");
    expect(name("fd00:ec2::254")).toBe("metadata");
    expect(name("fe80::1%eth0")).toBe("link-local");
    expect(name("ff02::1")).toBe("multicast");
    expect(name("2606:4700::1111")).toBeUndefined();
  });
});
