import { BlockList, isIPv6 } from "node:net";

/**
 * A builtin deny range. `pinned` ranges (loopback, "this network", link-local/metadata,
 * multicast, reserved, broadcast) can only be opened by a more specific CIDR allow rule, never
 * by a domain rule: a name that resolves there is a DNS-rebinding attempt.
 */
export interface SpecialRange {
  /** Short name used in log lines: `builtin:<name> (<cidr>)`. */
  name: string;
  cidr: string;
  pinned: boolean;
}

/** IANA IPv4 special-purpose address registry (RFC 6890 and updates), plus cloud metadata. */
export const SPECIAL_IPV4_RANGES: readonly SpecialRange[] = Object.freeze([
  { name: "this-network", cidr: "0.0.0.0/8", pinned: true },
  { name: "private-10", cidr: "10.0.0.0/8", pinned: false },
  { name: "shared-address-space", cidr: "100.64.0.0/10", pinned: false },
  { name: "metadata", cidr: "100.100.100.200/32", pinned: true },
  { name: "loopback", cidr: "127.0.0.0/8", pinned: true },
  { name: "link-local", cidr: "169.254.0.0/16", pinned: true },
  { name: "private-172", cidr: "172.16.0.0/12", pinned: false },
  { name: "ietf-protocol-assignments", cidr: "192.0.0.0/24", pinned: false },
  { name: "documentation", cidr: "192.0.2.0/24", pinned: false },
  { name: "amt", cidr: "192.31.196.0/24", pinned: false },
  { name: "as112-v4", cidr: "192.52.193.0/24", pinned: false },
  { name: "6to4-relay-anycast", cidr: "192.88.99.0/24", pinned: false },
  { name: "private-192", cidr: "192.168.0.0/16", pinned: false },
  { name: "direct-delegation-as112", cidr: "192.175.48.0/24", pinned: false },
  { name: "benchmarking", cidr: "198.18.0.0/15", pinned: false },
  { name: "documentation", cidr: "198.51.100.0/24", pinned: false },
  { name: "documentation", cidr: "203.0.113.0/24", pinned: false },
  { name: "multicast", cidr: "224.0.0.0/4", pinned: true },
  { name: "reserved", cidr: "240.0.0.0/4", pinned: true },
  { name: "limited-broadcast", cidr: "255.255.255.255/32", pinned: true },
] satisfies SpecialRange[]);

/** IANA IPv6 special-purpose address registry (abridged) plus the AWS metadata address. */
export const SPECIAL_IPV6_RANGES: readonly SpecialRange[] = Object.freeze([
  { name: "unspecified", cidr: "::/128", pinned: true },
  { name: "loopback", cidr: "::1/128", pinned: true },
  { name: "ipv4-mapped", cidr: "::ffff:0:0/96", pinned: true },
  { name: "nat64", cidr: "64:ff9b::/96", pinned: false },
  { name: "local-nat64", cidr: "64:ff9b:1::/48", pinned: false },
  { name: "discard-only", cidr: "100::/64", pinned: false },
  { name: "ietf-protocol-assignments", cidr: "2001::/23", pinned: false },
  { name: "documentation", cidr: "2001:db8::/32", pinned: false },
  { name: "unique-local", cidr: "fc00::/7", pinned: false },
  { name: "metadata", cidr: "fd00:ec2::254/128", pinned: true },
  { name: "link-local", cidr: "fe80::/10", pinned: true },
  { name: "multicast", cidr: "ff00::/8", pinned: true },
] satisfies SpecialRange[]);

let v6Lists: Array<{ range: SpecialRange; prefix: number; list: BlockList }> | undefined;

/**
 * The most specific IPv6 special-purpose range containing `address`, or undefined for a global
 * unicast address. For whoever relays IPv6 (the stack itself is IPv4-only and refuses IPv6).
 */
export function specialIpv6Range(address: string): SpecialRange | undefined {
  const a = address.replace(/%.*$/, "");
  if (!isIPv6(a)) return undefined;
  v6Lists ??= SPECIAL_IPV6_RANGES.map((range) => {
    const [net, bits] = range.cidr.split("/") as [string, string];
    const list = new BlockList();
    list.addSubnet(net, Number(bits), "ipv6");
    return { range, prefix: Number(bits), list };
  });
  let best: { range: SpecialRange; prefix: number } | undefined;
  for (const e of v6Lists) {
    if (e.list.check(a, "ipv6") && (!best || e.prefix > best.prefix)) best = e;
  }
  return best?.range;
}
