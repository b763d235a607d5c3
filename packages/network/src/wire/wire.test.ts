import { describe, expect, test } from "vitest";
import { ARP_REPLY, ARP_REQUEST, buildArpFrame, parseArp } from "./arp.js";
import { checksum, checksumFinish, checksumPartial, checksumPartialScalar } from "./checksum.js";
import { returnSimdSlab, takeSimdSlab } from "./simd-memory.js";
import { DHCP_ACK, DHCP_DISCOVER, buildDhcpReply, parseDhcp } from "./dhcp.js";
import { BROADCAST_MAC, parseEthernet } from "./ethernet.js";
import { ipToString, parseIp } from "./ip-address.js";
import { parseIpv4, writeIpv4 } from "./ipv4.js";
import { TCP_ACK, TCP_SYN, finishTcpChecksum, parseTcp, writeTcpHeader } from "./tcp.js";
import { parseUdp, writeUdp } from "./udp.js";

function referenceChecksum(b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < b.length; i += 2) {
    s += (b[i]! << 8) | (i + 1 < b.length ? b[i + 1]! : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  return ~s & 0xffff;
}

describe("checksum", () => {
  test("matches a 16-bit reference on odd and even lengths, all-ones and random data", () => {
    for (const n of [1, 2, 3, 20, 1499, 1500, 65535]) {
      const ones = new Uint8Array(n).fill(0xff);
      expect(checksum(ones, 0, n)).toBe(referenceChecksum(ones));
      const rnd = Uint8Array.from({ length: n }, (_, i) => (i * 7919 + 13) & 0xff);
      expect(checksum(rnd, 0, n)).toBe(referenceChecksum(rnd));
    }
  });
  test("the word-at-a-time path agrees with the reference at every alignment and length", () => {
    const big = Buffer.alloc(70_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    for (const off of [0, 1, 2, 3, 4, 6, 34]) {
      for (const n of [63, 64, 65, 66, 67, 1480, 1481, 65515]) {
        const view = big.subarray(off, off + n);
        expect(checksum(big, off, n)).toBe(referenceChecksum(view));
        expect(checksumFinish(checksumPartialScalar(big, off, n))).toBe(referenceChecksum(view));
      }
    }
  });
  test("the SIMD path (in place in the SIMD memory's slabs, or through its scratch slab) agrees with the reference", () => {
    const slab = takeSimdSlab();
    expect(slab, "WebAssembly SIMD is available on Node 24").toBeDefined();
    try {
      for (let i = 0; i < slab!.length; i++) slab![i] = (i * 2654435761) >>> 24;
      // All-ones stretches make the 32-bit lanes and the fold carry as much as they can.
      slab!.fill(0xff, 200_000, 800_000);
      for (const off of [0, 1, 2, 3, 4, 6, 34, 199_990, 500_001]) {
        for (const n of [63, 64, 65, 66, 67, 79, 80, 1480, 1481, 32_768, 32_783, 65_515, 65_535, 300_001]) {
          const view = slab!.subarray(off, off + n);
          expect(checksum(slab!, off, n)).toBe(referenceChecksum(view));
          // The same bytes outside the memory (copied into the scratch slab from 512 bytes on) and
          // the JavaScript loop: the same partial sum once folded.
          const copy = Buffer.from(view);
          const scalar = checksumFinish(checksumPartialScalar(copy, 0, n, 0x1234));
          expect(checksumFinish(checksumPartial(view, 0, n, 0x1234))).toBe(scalar);
          expect(checksumFinish(checksumPartial(copy, 0, n, 0x1234))).toBe(scalar);
        }
      }
      slab!.fill(0);
      expect(checksum(slab!, 10, 1000)).toBe(0xffff);
    } finally {
      returnSimdSlab(slab!);
    }
  });
  test("RFC 1071 example", () => {
    const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(checksumFinish(checksumPartial(b, 0, 8))).toBe(~0xddf2 & 0xffff);
  });
});

describe("addresses", () => {
  test("parse/format round trip and rejection", () => {
    expect(ipToString(parseIp("100.96.0.1")!)).toBe("100.96.0.1");
    expect(parseIp("256.0.0.1")).toBeUndefined();
    expect(parseIp("1.2.3")).toBeUndefined();
  });
});

describe("ipv4", () => {
  const buf = Buffer.alloc(40);
  writeIpv4(buf, 0, { totalLength: 40, identification: 7, protocol: 6, src: parseIp("10.0.0.1")!, dst: parseIp("10.0.0.2")!, dontFragment: true });
  test("writes a header that parses back with a valid checksum", () => {
    const h = parseIpv4(buf, 0);
    expect(h).toMatchObject({ headerLength: 20, totalLength: 40, protocol: 6, dontFragment: true, ttl: 64 });
  });
  test("rejects bad checksum, truncation, bad version and lengths", () => {
    const bad = Buffer.from(buf);
    bad[8] = 1;
    expect(parseIpv4(bad, 0)).toBe("checksum");
    expect(parseIpv4(buf.subarray(0, 19), 0)).toBe("truncated");
    const v6 = Buffer.from(buf);
    v6[0] = 0x65;
    expect(parseIpv4(v6, 0)).toBe("version");
    expect(parseIpv4(buf.subarray(0, 30), 0)).toBe("total-length");
  });
});

describe("tcp", () => {
  test("header with MSS/WS/SACK options round-trips and the checksum verifies", () => {
    const seg = Buffer.alloc(60 + 5);
    const hlen = writeTcpHeader(seg, 0, { srcPort: 1234, dstPort: 80, seq: 0xfffffff0, ack: 5, flags: TCP_SYN | TCP_ACK, window: 1000, options: { mss: 1460, windowScale: 7, sackPermitted: true } });
    seg.write("hello", hlen);
    const len = hlen + 5;
    finishTcpChecksum(seg, 0, len, 1, 2);
    const p = parseTcp(seg, 0, len, 1, 2);
    expect(p).toMatchObject({ srcPort: 1234, dstPort: 80, seq: 0xfffffff0, ack: 5, flags: TCP_SYN | TCP_ACK, window: 1000, options: { mss: 1460, windowScale: 7, sackPermitted: true } });
    expect(Buffer.from((p as { payload: Uint8Array }).payload).toString()).toBe("hello");
    expect(parseTcp(seg, 0, len, 1, 3)).toBe("checksum");
    seg[12] = 0x10;
    expect(parseTcp(seg, 0, len, 1, 2, false)).toBe("data-offset");
  });
  test("malformed options never read past the header", () => {
    const seg = Buffer.alloc(24);
    writeTcpHeader(seg, 0, { srcPort: 1, dstPort: 2, seq: 0, ack: 0, flags: TCP_ACK, window: 0 });
    seg[12] = 6 << 4;
    seg[20] = 2;
    seg[21] = 40; // claims 40 bytes
    expect(parseTcp(seg, 0, 24, 0, 0, false)).toMatchObject({ options: {} });
  });
});

describe("udp", () => {
  test("checksum is computed, verified, and 0 means none", () => {
    const d = Buffer.alloc(12);
    d.write("ping", 8);
    writeUdp(d, 0, 5000, 53, 12, 1, 2);
    expect(parseUdp(d, 0, 12, 1, 2)).toEqual({ srcPort: 5000, dstPort: 53, length: 12 });
    expect(parseUdp(d, 0, 12, 1, 9)).toBe("checksum");
    d.writeUInt16BE(0, 6);
    expect(parseUdp(d, 0, 12, 1, 9)).toMatchObject({ dstPort: 53 });
    expect(parseUdp(d, 0, 7, 1, 2)).toBe("truncated");
    d.writeUInt16BE(100, 4);
    expect(parseUdp(d, 0, 12, 1, 2)).toBe("length");
  });
});

describe("arp and ethernet", () => {
  test("request/reply round trip", () => {
    const me = Uint8Array.from([2, 0, 0, 0, 0, 1]);
    const f = buildArpFrame(BROADCAST_MAC, me, ARP_REQUEST, me, 0x0a000001, new Uint8Array(6), 0x0a000002);
    expect(parseEthernet(f)?.etherType).toBe(0x0806);
    expect(parseArp(f.subarray(14))).toMatchObject({ operation: ARP_REQUEST, senderIp: 0x0a000001, targetIp: 0x0a000002 });
    expect(parseArp(f.subarray(14, 30))).toBeUndefined();
    expect(ARP_REPLY).toBe(2);
    expect(parseEthernet(f.subarray(0, 13))).toBeUndefined();
  });
});

describe("dhcp", () => {
  test("reply carries address, mask, router, DNS and MTU; requests parse", () => {
    const chaddr = Uint8Array.from([2, 0x6d, 0x73, 0, 0, 2]);
    const reply = buildDhcpReply({ messageType: DHCP_ACK, xid: 0x1234, flags: 0x8000, chaddr, yiaddr: parseIp("100.96.0.2")!, serverIp: parseIp("100.96.0.1")!, subnetMask: 0xfffffffc, router: parseIp("100.96.0.1")!, dnsServers: [parseIp("100.96.0.1")!], leaseSeconds: 3600, mtu: 1500 });
    expect(reply[0]).toBe(2);
    expect(reply.readUInt32BE(16)).toBe(parseIp("100.96.0.2"));
    const opts = reply.subarray(240);
    expect([...opts.subarray(0, 3)]).toEqual([53, 1, DHCP_ACK]);
    const find = (code: number) => {
      for (let i = 0; i < opts.length && opts[i] !== 255; i += 2 + opts[i + 1]!) if (opts[i] === code) return opts.subarray(i + 2, i + 2 + opts[i + 1]!);
      return undefined;
    };
    expect(find(1)?.readUInt32BE(0)).toBe(0xfffffffc);
    expect(find(3)?.readUInt32BE(0)).toBe(parseIp("100.96.0.1"));
    expect(find(6)?.readUInt32BE(0)).toBe(parseIp("100.96.0.1"));
    expect(find(26)?.readUInt16BE(0)).toBe(1500);
    const req = Buffer.from(reply);
    req[0] = 1;
    req[242] = DHCP_DISCOVER;
    expect(parseDhcp(req)).toMatchObject({ op: 1, xid: 0x1234, messageType: DHCP_DISCOVER });
    expect(parseDhcp(req.subarray(0, 100))).toBeUndefined();
  });
});
