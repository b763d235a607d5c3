import { createServer, type Server } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EgressPolicy } from "@iii/network";
import * as sockets from "@bytecodealliance/preview2-shim/sockets";
import * as httpShim from "@bytecodealliance/preview2-shim/http";
import { defaultWasiNetwork, type WasiNetwork } from "../../src/wasm/config.js";
import { bindRefusal, createSocketGuard, egressRulesFor, guardShimHttp, guardShimSockets, ipv4ToInt, parseSocketPattern, patternMatches, type NetDenial, type ShimHttp, type ShimSockets } from "../../src/wasm/net-guard.js";

// The real preview2-shim sockets with the runner's guard in front; the targets are listeners on loopback, so a
// broken defence shows up as a local connection and nothing leaves the machine.
let listed: Server;
let unlisted: Server;
const accepted = { listed: 0, unlisted: 0 };
const denials: NetDenial[] = [];
let network: WasiNetwork;

const listen = (onConn: () => void) =>
  new Promise<Server>((resolve) => {
    const s = createServer((c) => {
      onConn();
      c.destroy();
    });
    s.listen(0, "127.0.0.1", () => resolve(s));
  });
const portOf = (s: Server) => (s.address() as { port: number }).port;

beforeAll(async () => {
  listed = await listen(() => accepted.listed++);
  unlisted = await listen(() => accepted.unlisted++);
  network = { ...defaultWasiNetwork(), tcpConnect: [`127.0.0.1:${portOf(listed)}`] };
  const policy = new EgressPolicy({ mode: "none", hostPorts: [], rules: egressRulesFor(network.tcpConnect, "tcp") });
  guardShimSockets(sockets as unknown as ShimSockets, createSocketGuard(network, (p, ip, port) => policy.decide(p, ip, port, 0xffffffff), (d) => denials.push(d)));
});
afterAll(() => {
  listed.close();
  unlisted.close();
});

const net = () => (sockets as any).instanceNetwork.instanceNetwork();
const connect = (port: number) => {
  const socket = (sockets as any).tcpCreateSocket.createTcpSocket("ipv4");
  socket.startConnect(net(), { tag: "ipv4", val: { address: [127, 0, 0, 1], port } });
};

it("a connect to a host address is refused by the egress policy even when tcpConnect lists it", async () => {
  expect(() => connect(portOf(listed))).toThrow("access-denied");
  expect(denials.at(-1)).toMatchObject({ op: "tcpConnect", reason: "egress policy: host loopback" });
  await sleep(200);
  expect(accepted.listed).toBe(0);
});

it("a connect to an address outside tcpConnect is refused", async () => {
  expect(() => connect(portOf(unlisted))).toThrow("access-denied");
  expect(denials.at(-1)).toMatchObject({ op: "tcpConnect", reason: "not in tcpConnect" });
  await sleep(200);
  expect(accepted.unlisted).toBe(0);
});

it("a bind outside tcpBind and IPv6 are refused", () => {
  const socket = (sockets as any).tcpCreateSocket.createTcpSocket("ipv4");
  expect(() => socket.startBind(net(), { tag: "ipv4", val: { address: [127, 0, 0, 1], port: 0 } })).toThrow("access-denied");
  const v6 = (sockets as any).tcpCreateSocket.createTcpSocket("ipv6");
  expect(() => v6.startConnect(net(), { tag: "ipv6", val: { address: [0, 0, 0, 0, 0, 0, 0, 1], port: portOf(listed), flowInfo: 0, scopeId: 0 } })).toThrow("access-denied");
});

it("with allowIpNameLookup false there is no name resolution at all", () => {
  expect(() => (sockets as any).ipNameLookup.resolveAddresses(net(), "localhost")).toThrow("permanent-resolver-failure");
  expect(denials.at(-1)).toMatchObject({ op: "lookup", address: "localhost", reason: "allowIpNameLookup is false" });
});

it("the egress policy denies special ranges and host addresses a pattern does not narrow, and allows a listed public address", () => {
  const rules = egressRulesFor(["10.0.0.0/8:*", "203.0.113.7:443", "198.51.100.0/24:53"], "tcp");
  const policy = new EgressPolicy({ mode: "none", hostPorts: [], rules });
  const decide = (ip: string, port: number) => policy.decide("tcp", ipv4ToInt(ip)!, port, 0xffffffff).allowed;
  expect(decide("192.168.1.1", 80)).toBe(false); // private, not listed
  expect(decide("169.254.169.254", 80)).toBe(false); // metadata
  expect(decide("203.0.113.7", 443)).toBe(true); // a /32 narrower than TEST-NET-3 opens it (as an --allow does for a VM)
  expect(decide("203.0.113.8", 443)).toBe(false);
});

it("patterns: *, addresses, CIDRs, port ranges; bad ones named", () => {
  const p = (t: string) => parseSocketPattern(t) as Exclude<ReturnType<typeof parseSocketPattern>, string>;
  expect(patternMatches(p("*:*"), ipv4ToInt("203.0.113.9")!, 1)).toBe(true);
  expect(patternMatches(p("10.1.0.0/16:443"), ipv4ToInt("10.1.200.3")!, 443)).toBe(true);
  expect(patternMatches(p("10.1.0.0/16:443"), ipv4ToInt("10.2.0.1")!, 443)).toBe(false);
  expect(patternMatches(p("192.0.2.1:8000-8010"), ipv4ToInt("192.0.2.1")!, 8011)).toBe(false);
  expect(parseSocketPattern("example.com:80")).toMatch(/expected ADDR:PORT/);
  expect(parseSocketPattern("10.0.0.0/33:1")).toBe("not an IPv4 address or CIDR");
});

it("binds: an empty list allows none (with inherit only UDP 0.0.0.0:0); loopback, 0.0.0.0 and ports < 1024 need a pattern naming them", () => {
  const list = (...t: string[]) => t.map((x) => parseSocketPattern(x) as Exclude<ReturnType<typeof parseSocketPattern>, string>);
  const ip = (t: string) => ipv4ToInt(t)!;
  expect(bindRefusal([], "tcpBind", "tcp", ip("127.0.0.1"), 49134, true)).toMatch(/an empty tcpBind allows no bind, even with the host network inherited/);
  expect(bindRefusal([], "tcpBind", "tcp", 0, 0, true)).toMatch(/empty tcpBind/); // a TCP connect needs no bind
  expect(bindRefusal([], "udpBind", "udp", 0, 0, true)).toBeUndefined(); // the bind a UDP client needs
  expect(bindRefusal([], "udpBind", "udp", 0, 0, false)).toMatch(/not in udpBind/);
  expect(bindRefusal([], "udpBind", "udp", 0, 53, true)).toMatch(/empty udpBind/);
  expect(bindRefusal(list("*:*"), "tcpBind", "tcp", ip("127.0.0.1"), 49134, true)).toMatch(/loopback needs a tcpBind pattern naming its address/);
  expect(bindRefusal(list("*:*"), "tcpBind", "tcp", 0, 8080, false)).toMatch(/0\.0\.0\.0 .* needs a tcpBind pattern naming its address/);
  expect(bindRefusal(list("*:*"), "tcpBind", "tcp", ip("10.1.2.3"), 8080, false)).toBeUndefined();
  expect(bindRefusal(list("*:*"), "tcpBind", "tcp", 0, 0, false)).toBeUndefined(); // an ephemeral port squats nothing
  expect(bindRefusal(list("127.0.0.1:49134"), "tcpBind", "tcp", ip("127.0.0.1"), 49134, true)).toBeUndefined();
  expect(bindRefusal(list("0.0.0.0:8080"), "tcpBind", "tcp", 0, 8080, true)).toBeUndefined();
  expect(bindRefusal(list("0.0.0.0:*"), "tcpBind", "tcp", 0, 81, true)).toMatch(/port 81 \(below 1024\) needs a tcpBind pattern naming the port/);
  expect(bindRefusal(list("10.1.2.3:*"), "tcpBind", "tcp", ip("10.1.2.3"), 22, true)).toMatch(/port 22/);
  expect(bindRefusal(list("0.0.0.0:81"), "tcpBind", "tcp", 0, 81, true)).toBeUndefined();
  expect(bindRefusal(list("10.0.0.0/8:*"), "tcpBind", "tcp", ip("127.0.0.1"), 8080, true)).toMatch(/not in tcpBind/);
});

describe("outgoing HTTP (preview2-shim's wasi:http, which opens its own connections past the socket guard)", () => {
  let httpListener: Server;
  let httpHits = 0;
  const http = httpShim as unknown as ShimHttp & { types: Record<string, any> };
  beforeAll(async () => {
    httpListener = await listen(() => httpHits++);
    guardShimHttp(http, createSocketGuard({ ...defaultWasiNetwork(), tcpConnect: ["203.0.113.7:80"] }, (p, ip, port) => new EgressPolicy({ mode: "none", hostPorts: [], rules: egressRulesFor(["203.0.113.7:80"], "tcp") }).decide(p, ip, port, 0xffffffff), (d) => denials.push(d)));
  });
  afterAll(() => httpListener.close());
  const request = (authority: string) => {
    const r = new http.types.OutgoingRequest(new http.types.Fields());
    r.setScheme({ tag: "HTTP" });
    r.setAuthority(authority);
    r.setPathWithQuery("/");
    return r;
  };

  it("a request to the host's loopback is refused (HTTP-request-denied) and never connects", async () => {
    expect(() => http.outgoingHandler.handle(request(`127.0.0.1:${portOf(httpListener)}`))).toThrow(expect.objectContaining({ tag: "HTTP-request-denied" }));
    expect(denials.at(-1)).toMatchObject({ op: "tcpConnect", reason: "not in tcpConnect" });
    await sleep(300);
    expect(httpHits).toBe(0);
  });

  it("a request to a host name is refused before the shim could resolve it (localhost would be the host)", async () => {
    expect(() => http.outgoingHandler.handle(request(`localhost:${portOf(httpListener)}`))).toThrow(expect.objectContaining({ tag: "HTTP-request-denied" }));
    expect(denials.at(-1)).toMatchObject({ op: "http", address: `localhost:${portOf(httpListener)}`, reason: expect.stringMatching(/host name is refused/) });
    await sleep(300);
    expect(httpHits).toBe(0);
  });
});
