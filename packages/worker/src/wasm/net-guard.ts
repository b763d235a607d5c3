import type { WasiNetwork } from "./config.js";

/** A WASI_CONFIG socket pattern: `ADDR:PORT`, ADDR `*`, an IPv4 address or an IPv4 CIDR; PORT `*`, N or LO-HI. */
export interface SocketPattern {
  net: number;
  prefix: number;
  portLo: number;
  portHi: number;
  text: string;
}

const PATTERN = /^(\*|(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?):(\*|\d{1,5}(?:-\d{1,5})?)$/;

export function ipv4ToInt(text: string): number | undefined {
  const parts = text.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return undefined;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** Parses a pattern; returns a reason when it is not one. */
export function parseSocketPattern(text: string): SocketPattern | string {
  const m = PATTERN.exec(text);
  if (!m) return "expected ADDR:PORT (ADDR *, an IPv4 address or CIDR; PORT *, N or LO-HI)";
  let net = 0;
  let prefix = 0;
  if (m[1] !== "*") {
    const ip = ipv4ToInt(m[2]!);
    prefix = m[3] === undefined ? 32 : Number(m[3]);
    if (ip === undefined || prefix > 32) return "not an IPv4 address or CIDR";
    net = prefix === 0 ? 0 : (ip & (~0 << (32 - prefix))) >>> 0;
  }
  let portLo = 0;
  let portHi = 65535;
  if (m[4] !== "*") {
    const [lo, hi = lo] = m[4]!.split("-").map(Number) as [number, number?];
    if (lo > 65535 || hi! > 65535 || lo > hi!) return "ports are 0-65535, low to high";
    portLo = lo;
    portHi = hi!;
  }
  return { net, prefix, portLo, portHi, text };
}

export function patternMatches(p: SocketPattern, ip: number, port: number): boolean {
  const mask = p.prefix === 0 ? 0 : (~0 << (32 - p.prefix)) >>> 0;
  return ((ip & mask) >>> 0) === p.net && port >= p.portLo && port <= p.portHi;
}

/** The second check, shared with VMs: host addresses and special ranges denied unless a narrower pattern opens them. */
export type EgressCheck = (protocol: "tcp" | "udp", ip: number, port: number) => { allowed: boolean; rule: string };

interface ShimAddress {
  tag: "ipv4" | "ipv6";
  val: { address: number[]; port: number };
}

export interface ShimSockets {
  tcp: { TcpSocket: { prototype: Record<string, (...args: unknown[]) => unknown> } };
  udp: { UdpSocket: { prototype: Record<string, (...args: unknown[]) => unknown> } };
  ipNameLookup: { resolveAddresses: (...args: unknown[]) => unknown };
  _denyDnsLookup(): void;
  _denyTcp(): void;
  _denyUdp(): void;
}

export interface NetDenial {
  op: string;
  address: string;
  reason: string;
}

type ListName = "tcpConnect" | "tcpBind" | "udpBind" | "udpConnect" | "udpOutgoing";
type SocketCheck = (listName: ListName, protocol: "tcp" | "udp", address: ShimAddress, outbound: boolean) => void;

const LOOPBACK_NET = 127;
/** Ports only root may bind on the host. */
const PRIVILEGED_PORT_END = 1024;

/**
 * Why a bind to `ip:port` is refused (undefined: allowed). A bind puts a listener on the host itself (the shim's
 * TCP bind already listens, to hold the endpoint), so the lists alone decide, inherited network or not:
 * - an empty list allows no bind, except, with the host network inherited, the UDP bind to `0.0.0.0:0` a
 *   client socket needs before it can send (TCP connects need no bind);
 * - the host's loopback (127/8) and the unspecified address (0.0.0.0, which listens on loopback too) need a
 *   pattern that names them: a matching pattern with an address of prefix 8 or longer, not `*` (a chosen port
 *   there squats a port the engine or a local service expects);
 * - a port below 1024 needs a pattern that names its port (not `*`).
 */
export function bindRefusal(list: SocketPattern[], listName: string, protocol: "tcp" | "udp", ip: number, port: number, inherit: boolean): string | undefined {
  if (list.length === 0) {
    if (inherit && protocol === "udp" && ip === 0 && port === 0) return undefined;
    return `not in ${listName} (an empty ${listName} allows no bind${inherit ? ", even with the host network inherited" : ""})`;
  }
  const matching = list.filter((p) => patternMatches(p, ip, port));
  if (matching.length === 0) return `not in ${listName}`;
  const hostLocal = ip === 0 || ip >>> 24 === LOOPBACK_NET;
  if (hostLocal && port !== 0 && !matching.some((p) => p.prefix >= 8)) {
    return `${ip === 0 ? "0.0.0.0 (every host address, loopback included)" : "the host's loopback"} needs a ${listName} pattern naming its address, not *`;
  }
  if (port !== 0 && port < PRIVILEGED_PORT_END && !matching.some((p) => !(p.portLo === 0 && p.portHi === 65535))) {
    return `port ${port} (below 1024) needs a ${listName} pattern naming the port, not *`;
  }
  return undefined;
}

/** WASI_CONFIG's network section, parsed once, with the check every guarded operation (sockets and HTTP) goes through. */
export interface SocketGuard {
  network: WasiNetwork;
  lists: Record<ListName, SocketPattern[]>;
  /** Reports a refusal, then throws it as the shim's `access-denied`. */
  check: SocketCheck;
  onDenied: (d: NetDenial) => void;
}

export function createSocketGuard(network: WasiNetwork, egress: EgressCheck, onDenied: (d: NetDenial) => void = () => undefined): SocketGuard {
  const lists = {
    tcpConnect: network.tcpConnect.map(parseSocketPattern).filter((p): p is SocketPattern => typeof p !== "string"),
    tcpBind: network.tcpBind.map(parseSocketPattern).filter((p): p is SocketPattern => typeof p !== "string"),
    udpBind: network.udpBind.map(parseSocketPattern).filter((p): p is SocketPattern => typeof p !== "string"),
    udpConnect: network.udpConnect.map(parseSocketPattern).filter((p): p is SocketPattern => typeof p !== "string"),
    udpOutgoing: network.udpOutgoing.map(parseSocketPattern).filter((p): p is SocketPattern => typeof p !== "string"),
  };
  const check = (listName: keyof typeof lists, protocol: "tcp" | "udp", address: ShimAddress, outbound: boolean) => {
    const text = address.tag === "ipv4" ? `${address.val.address.join(".")}:${address.val.port}` : `[ipv6]:${address.val.port}`;
    const deny = (reason: string): never => {
      onDenied({ op: listName, address: text, reason });
      throw "access-denied";
    };
    if (address.tag !== "ipv4") deny("IPv6 is not allowed");
    const ip = ipv4ToInt(address.val.address.join("."))!;
    const port = address.val.port;
    const list = lists[listName];
    if (!outbound) {
      const reason = bindRefusal(list, listName, protocol, ip, port, network.inherit);
      if (reason) deny(reason);
      return;
    }
    // inherit with an empty list: any address (still under the egress policy); otherwise the list decides
    if (!list.some((p) => patternMatches(p, ip, port)) && !(network.inherit && list.length === 0)) deny(`not in ${listName}`);
    // The host itself is never a target: its loopback (a VM's 127/8 is its own; a runner's is the host's) and 0/8.
    if (ip >>> 24 === 127 || ip >>> 24 === 0) deny("egress policy: host loopback");
    const decision = egress(protocol, ip, port);
    if (!decision.allowed) deny(`egress policy: ${decision.rule}`);
  };
  return { network, check, lists, onDenied };
}

/**
 * Puts WASI_CONFIG's network lists in front of preview2-shim's sockets (whose own switches are all-or-nothing
 * per protocol): a TCP connect must match `tcpConnect`, a bind `tcpBind`/`udpBind`, a UDP stream's remote
 * `udpConnect`, and every address a socket would reach must also pass the egress policy. IPv6 is refused (the
 * egress policy is IPv4-only). A refusal is the shim's `access-denied`. No lookups unless `allowIpNameLookup`.
 */
export function guardShimSockets(sockets: ShimSockets, guard: SocketGuard): void {
  const { network, check, lists, onDenied } = guard;
  if (!network.allowIpNameLookup) {
    sockets._denyDnsLookup();
    // and refused here, before the shim is asked (its own refusal is the same error)
    sockets.ipNameLookup.resolveAddresses = (_net: unknown, name: unknown) => {
      onDenied({ op: "lookup", address: String(name), reason: "allowIpNameLookup is false" });
      throw "permanent-resolver-failure";
    };
  }
  if (!network.inherit && lists.tcpConnect.length === 0 && lists.tcpBind.length === 0) sockets._denyTcp();
  if (!network.inherit && lists.udpBind.length + lists.udpConnect.length + lists.udpOutgoing.length === 0) sockets._denyUdp();

  const tcp = sockets.tcp.TcpSocket.prototype;
  const tcpConnect = tcp.startConnect!;
  const tcpBind = tcp.startBind!;
  tcp.startConnect = function (this: unknown, net: unknown, remote: unknown) {
    check("tcpConnect", "tcp", remote as ShimAddress, true);
    return tcpConnect.call(this, net, remote);
  };
  tcp.startBind = function (this: unknown, net: unknown, local: unknown) {
    check("tcpBind", "tcp", local as ShimAddress, false);
    return tcpBind.call(this, net, local);
  };
  const udp = sockets.udp.UdpSocket.prototype;
  const udpBind = udp.startBind!;
  const udpStream = udp.stream!;
  udp.startBind = function (this: unknown, net: unknown, local: unknown) {
    check("udpBind", "udp", local as ShimAddress, false);
    return udpBind.call(this, net, local);
  };
  udp.stream = function (this: unknown, remote: unknown) {
    if (remote) check("udpConnect", "udp", remote as ShimAddress, true);
    const streams = udpStream.call(this, remote) as [unknown, { send: (d: { data: Uint8Array; remoteAddress?: ShimAddress }[]) => unknown }];
    const outgoing = streams[1];
    const send = outgoing.send.bind(outgoing);
    outgoing.send = (datagrams) => {
      for (const d of datagrams) if (d.remoteAddress) check("udpOutgoing", "udp", d.remoteAddress, true);
      return send(datagrams);
    };
    return streams;
  };
}

/** The egress rules for one protocol's outbound patterns: each pattern an allow rule (as `--allow` is for a VM). */
export function egressRulesFor(patterns: string[], protocol: "tcp" | "udp") {
  return patterns
    .map(parseSocketPattern)
    .filter((p): p is SocketPattern => typeof p !== "string")
    .map((p) => ({
      action: "allow" as const,
      cidr: `${[p.net >>> 24, (p.net >>> 16) & 255, (p.net >>> 8) & 255, p.net & 255].join(".")}/${p.prefix}`,
      ...(p.portLo === 0 && p.portHi === 65535 ? {} : { ports: (p.portLo === p.portHi ? p.portLo : [p.portLo, p.portHi]) as number | [number, number] }),
      protocol,
      name: `wasm:${p.text}`,
    }));
}

export interface ShimHttp {
  outgoingHandler: { handle(request: unknown, options?: unknown): unknown };
}

/**
 * preview2-shim's outgoing HTTP opens its own connections, past the socket guard: each request's authority is
 * checked as a TCP connect (`tcpConnect` and the egress policy). Only an IPv4 address is accepted: a host name
 * would be resolved by the shim after this check, so its address could not be held to the policy (a name that
 * resolves to the host's loopback is exactly the attack), and is refused. A refusal is wasi:http's
 * `HTTP-request-denied`.
 */
export function guardShimHttp(http: ShimHttp, guard: SocketGuard): void {
  const { check, onDenied } = guard;
  const handle = http.outgoingHandler.handle.bind(http.outgoingHandler);
  http.outgoingHandler.handle = (request: unknown, options?: unknown) => {
    const r = request as { authority(): string | undefined; scheme(): { tag: string; val?: string } | undefined };
    const authority = r.authority() ?? "";
    const denied = { tag: "HTTP-request-denied" };
    // The scheme as the shim turns it into a protocol (schemeString: `other` lowercased), so the default port
    // checked here is the one it dials: `other "HTTP"` is http, port 80 (review rev6h: it was checked as 443).
    const s = r.scheme();
    const scheme = s === undefined ? "https" : s.tag === "HTTP" ? "http" : s.tag === "HTTPS" ? "https" : String(s.val ?? "").toLowerCase();
    if (scheme !== "http" && scheme !== "https") {
      onDenied({ op: "http", address: authority, reason: `scheme ${JSON.stringify(scheme)} is not http or https` });
      throw denied;
    }
    const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(authority);
    if (!m) {
      onDenied({ op: "http", address: authority, reason: authority.startsWith("[") ? "IPv6 is not allowed" : "HTTP to a host name is refused (only addresses can be held to the policy)" });
      throw denied;
    }
    const port = m[2] ? Number(m[2]) : scheme === "http" ? 80 : 443;
    const address = m[1]!.split(".").map(Number);
    // Only the canonical dotted quad: Node does not take `012.0.0.1` for an address and hands it to getaddrinfo,
    // whose inet_aton reads a leading 0 as octal (10.0.0.1), while the check read 12.0.0.1 (review rev6h).
    if (!isCanonicalIpv4(m[1]!) || (m[2] !== undefined && String(port) !== m[2]) || port > 65535) {
      onDenied({ op: "http", address: authority, reason: "not an address (write it as a plain dotted quad: no leading zeros)" });
      throw denied;
    }
    try {
      check("tcpConnect", "tcp", { tag: "ipv4", val: { address, port } }, true);
    } catch {
      throw denied;
    }
    return handle(request, options);
  };
}

/** `a.b.c.d`, each part 0-255 in decimal without a leading zero: the only spelling every resolver reads alike. */
export function isCanonicalIpv4(text: string): boolean {
  return /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/.test(text);
}
