import { spawnSync } from "node:child_process";
import { createServer, type Server } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EgressPolicy } from "@iii/network";
import * as httpShim from "@bytecodealliance/preview2-shim/http";
import { defaultWasiNetwork } from "../src/wasm/config.js";
import { createSocketGuard, egressRulesFor, guardShimHttp, isCanonicalIpv4, type NetDenial, type ShimHttp } from "../src/wasm/net-guard.js";
import { LocalTargets } from "../../network/test/local-targets.js";

// Review rev6h: a WASM component's outgoing wasi:http request is checked by its authority, then preview2-shim hands
// `host: authority.split(":")[0]` to Node's http.request. Two spellings made the check and the connection disagree:
// - `012.077.0NN.0MM`: the check read 12.77.NN.MM (a public address the rules allowed); Node does not take it for
//   an address and asks getaddrinfo, whose inet_aton reads each leading-0 part as octal: 10.63.x.y, a private
//   address (here one this test puts on a port-less bridge device of this host: nothing leaves the machine);
// - scheme `other "HTTP"` without a port: the check used 443, the shim lowercases it to http: and dials 80.
// The real shim, the real guard and policy; a hit on the listener is the breach.

const canRoot = process.getuid?.() === 0 && spawnSync("ip", ["link", "show"]).status === 0;
if (!canRoot) console.warn("[rev6h-http-authority] skipped: needs root and `ip` to put its target address on this host");

const x = 1 + (process.pid % 60);
const y = 1 + ((process.pid >> 6) % 60);
const target = `10.63.${x}.${y}`;
const octal = (n: number) => `0${n.toString(8).padStart(2, "0")}`;
/** The same target in inet_aton's octal; read as decimal it is 12.77.<octal digits>, inside 12.0.0.0/8. */
const octalAuthority = `012.077.${octal(x)}.${octal(y)}`;

const http = httpShim as unknown as ShimHttp & { types: Record<string, any> };
const denials: NetDenial[] = [];
let targets: LocalTargets | undefined;
let high: Server;
let port80: Server;
const hits = { high: 0, port80: 0 };

const listen = (port: number, count: () => void) =>
  new Promise<Server>((resolve, reject) => {
    const s = createServer((_req, res) => {
      count();
      res.end("breach");
    });
    s.once("error", reject);
    s.listen(port, target, () => resolve(s));
  });
const portOf = (s: Server) => (s.address() as { port: number }).port;

describe.skipIf(!canRoot)("wasi:http authority spellings the check and the connection read differently", () => {
  beforeAll(async () => {
    targets = LocalTargets.create({ hostAddresses: [target] });
    high = await listen(0, () => hits.high++);
    port80 = await listen(80, () => hits.port80++);
    // 12.0.0.0/8 (public) allowed on any port; the local target only on 443.
    const tcpConnect = ["12.0.0.0/8:*", `${target}:443`];
    const policy = new EgressPolicy({ mode: "none", hostPorts: [], rules: egressRulesFor(tcpConnect, "tcp") });
    guardShimHttp(http, createSocketGuard({ ...defaultWasiNetwork(), tcpConnect }, (p, ip, port) => policy.decide(p, ip, port, 0xffffffff), (d) => denials.push(d)));
  });
  afterAll(async () => {
    high?.close();
    port80?.close();
    targets?.close();
  });

  const request = (scheme: { tag: string; val?: string }, authority: string) => {
    const r = new http.types.OutgoingRequest(new http.types.Fields());
    r.setScheme(scheme);
    r.setAuthority(authority);
    r.setPathWithQuery("/");
    return r;
  };
  /** The shim's future either throws at once (refused) or is left to connect; the listeners tell which. */
  const send = (scheme: { tag: string; val?: string }, authority: string): unknown => {
    try {
      http.outgoingHandler.handle(request(scheme, authority));
      return undefined;
    } catch (error) {
      return error;
    }
  };

  it("an octal-looking dotted quad is refused, and the private address it spells is never reached", async () => {
    expect(isCanonicalIpv4(octalAuthority)).toBe(false);
    const error = send({ tag: "HTTP" }, `${octalAuthority}:${portOf(high)}`);
    await sleep(1000);
    expect(hits.high).toBe(0);
    expect(error).toMatchObject({ tag: "HTTP-request-denied" });
    expect(denials.at(-1)).toMatchObject({ op: "http", reason: expect.stringMatching(/not an address/) });
  });

  it("scheme other \"HTTP\" without a port is checked as port 80, where the shim dials (not 443)", async () => {
    const error = send({ tag: "other", val: "HTTP" }, target);
    await sleep(1000);
    expect(hits.port80).toBe(0);
    expect(error).toMatchObject({ tag: "HTTP-request-denied" });
    expect(denials.at(-1)).toMatchObject({ op: "tcpConnect", address: `${target}:80` });
  });

  it("a scheme the shim cannot dial is refused by name; the plain spellings still pass the check", async () => {
    expect(send({ tag: "other", val: "ftp" }, `${target}:443`)).toMatchObject({ tag: "HTTP-request-denied" });
    expect(denials.at(-1)).toMatchObject({ op: "http", reason: expect.stringMatching(/scheme "ftp"/) });
    expect(isCanonicalIpv4("10.0.0.1")).toBe(true);
    expect(isCanonicalIpv4("0.0.0.0")).toBe(true);
    expect(isCanonicalIpv4("255.255.255.255")).toBe(true);
    expect(isCanonicalIpv4("256.0.0.1")).toBe(false);
    expect(isCanonicalIpv4("1.2.3.04")).toBe(false);
  });
});
