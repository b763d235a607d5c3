import { describe, expect, test } from "vitest";
import { NetworkError } from "../errors.js";
import { parseIp } from "../wire/ip-address.js";
import { EgressPolicy } from "./egress-policy.js";

const GW = parseIp("100.96.0.1")!;
const ip = (s: string) => parseIp(s)!;

describe("EgressPolicy", () => {
  test("closed defaults: host loopback only on allowed ports, metadata and private denied, public allowed", () => {
    const p = new EgressPolicy();
    expect(p.decide("tcp", GW, 49134, GW)).toMatchObject({ allowed: true, dialHost: "127.0.0.1", dialPort: 49134 });
    expect(p.decide("tcp", GW, 22, GW)).toMatchObject({ allowed: false, rule: "builtin:host-port-not-allowed" });
    expect(p.decide("tcp", ip("169.254.169.254"), 80, GW)).toMatchObject({ allowed: false, rule: "builtin:link-local-metadata" });
    expect(p.decide("udp", ip("100.100.100.200"), 53, GW)).toMatchObject({ allowed: false });
    expect(p.decide("tcp", ip("127.0.0.1"), 49134, GW)).toMatchObject({ allowed: false, rule: "builtin:loopback-only-via-gateway" });
    for (const a of ["10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "100.96.0.6"]) {
      expect(p.decide("tcp", ip(a), 443, GW)).toMatchObject({ allowed: false, rule: "default:private-range" });
    }
    expect(p.decide("tcp", ip("93.184.216.34"), 443, GW)).toMatchObject({ allowed: true, rule: "default:allow", dialHost: "93.184.216.34" });
  });

  test("rules by CIDR, port range and protocol; first match wins; private ranges can be allowed", () => {
    const p = new EgressPolicy({
      rules: [
        { action: "allow", cidr: "10.1.0.0/16", ports: [8000, 8999], protocol: "tcp" },
        { action: "deny", cidr: "0.0.0.0/0", ports: 25 },
      ],
    });
    expect(p.decide("tcp", ip("10.1.2.3"), 8080, GW)).toMatchObject({ allowed: true, rule: "rule[0] allow cidr 10.1.0.0/16 ports 8000-8999 tcp" });
    expect(p.decide("udp", ip("10.1.2.3"), 8080, GW).allowed).toBe(false);
    expect(p.decide("tcp", ip("10.1.2.3"), 9000, GW).allowed).toBe(false);
    expect(p.decide("tcp", ip("8.8.8.8"), 25, GW)).toMatchObject({ allowed: false, rule: "rule[1] deny cidr 0.0.0.0/0 ports 25-25" });
  });

  test("domain rules bind resolved addresses until their TTL expires", () => {
    let now = 0;
    const p = new EgressPolicy({ defaultAction: "deny", rules: [{ action: "allow", domain: "*.example.com" }, { action: "deny", domain: "bad.example.org" }] }, () => now);
    const addr = ip("203.0.113.5");
    expect(p.decide("tcp", addr, 443, GW).allowed).toBe(false);
    expect(p.hasDomainRuleFor("api.example.com.")).toBe(true);
    p.bindResolved("api.example.com", [addr], 30);
    expect(p.decide("tcp", addr, 443, GW)).toMatchObject({ allowed: true, rule: "rule[0] allow domain *.example.com" });
    expect(p.decide("tcp", ip("203.0.113.6"), 443, GW).allowed).toBe(false);
    now = 31_000;
    expect(p.decide("tcp", addr, 443, GW).allowed).toBe(false);
    expect(p.deniedDomain("BAD.example.org.")).toBe("rule[1] deny domain bad.example.org");
    expect(p.deniedDomain("good.example.org")).toBeUndefined();
  });

  test("invalid configuration throws a typed error", () => {
    expect(() => new EgressPolicy({ rules: [{ action: "allow", cidr: "10.0.0.0/40" }] })).toThrow(NetworkError);
    try {
      new EgressPolicy({ hostPorts: [70000] });
    } catch (e) {
      expect((e as NetworkError).code).toBe("InvalidConfig");
    }
  });
});
