import { readIp, writeIp } from "./ip-address.js";

export const DHCP_DISCOVER = 1;
export const DHCP_OFFER = 2;
export const DHCP_REQUEST = 3;
export const DHCP_DECLINE = 4;
export const DHCP_ACK = 5;
export const DHCP_NAK = 6;
export const DHCP_RELEASE = 7;
export const DHCP_INFORM = 8;
const MAGIC_COOKIE = 0x63825363;
const FIXED_LENGTH = 240;

export interface DhcpMessage {
  op: number;
  xid: number;
  flags: number;
  ciaddr: number;
  chaddr: Uint8Array;
  messageType: number | undefined;
  requestedIp: number | undefined;
  serverId: number | undefined;
}

/** Parses a BOOTP/DHCP message (RFC 2131/2132) far enough for a one-lease server. */
export function parseDhcp(buf: Uint8Array): DhcpMessage | undefined {
  if (buf.length < FIXED_LENGTH) return undefined;
  if (buf[1] !== 1 || buf[2] !== 6) return undefined;
  if (readIp(buf, 236) !== MAGIC_COOKIE) return undefined;
  let messageType: number | undefined;
  let requestedIp: number | undefined;
  let serverId: number | undefined;
  let i = FIXED_LENGTH;
  while (i < buf.length) {
    const code = buf[i]!;
    if (code === 255) break;
    if (code === 0) {
      i++;
      continue;
    }
    if (i + 1 >= buf.length) break;
    const len = buf[i + 1]!;
    if (i + 2 + len > buf.length) break;
    if (code === 53 && len === 1) messageType = buf[i + 2];
    else if (code === 50 && len === 4) requestedIp = readIp(buf, i + 2);
    else if (code === 54 && len === 4) serverId = readIp(buf, i + 2);
    i += 2 + len;
  }
  return {
    op: buf[0]!,
    xid: readIp(buf, 4),
    flags: (buf[10]! << 8) | buf[11]!,
    ciaddr: readIp(buf, 12),
    chaddr: buf.subarray(28, 34),
    messageType,
    requestedIp,
    serverId,
  };
}

export interface DhcpReplyOptions {
  messageType: number;
  xid: number;
  flags: number;
  chaddr: Uint8Array;
  yiaddr: number;
  serverIp: number;
  subnetMask: number;
  router: number;
  dnsServers: number[];
  leaseSeconds: number;
  mtu: number;
}

/** Builds a BOOTREPLY (OFFER/ACK/NAK) with the options a guest needs to configure itself. */
export function buildDhcpReply(o: DhcpReplyOptions): Buffer {
  const opts: number[] = [53, 1, o.messageType, 54, 4, ...ipBytes(o.serverIp)];
  if (o.messageType !== DHCP_NAK) {
    opts.push(51, 4, ...ipBytes(o.leaseSeconds >>> 0));
    opts.push(1, 4, ...ipBytes(o.subnetMask));
    opts.push(3, 4, ...ipBytes(o.router));
    if (o.dnsServers.length > 0) opts.push(6, 4 * o.dnsServers.length, ...o.dnsServers.flatMap(ipBytes));
    opts.push(26, 2, o.mtu >>> 8, o.mtu & 0xff);
  }
  opts.push(255);
  const buf = Buffer.alloc(Math.max(300, FIXED_LENGTH + opts.length));
  buf[0] = 2;
  buf[1] = 1;
  buf[2] = 6;
  writeIp(buf, 4, o.xid);
  buf.writeUInt16BE(o.flags, 10);
  if (o.messageType !== DHCP_NAK) writeIp(buf, 16, o.yiaddr);
  writeIp(buf, 20, o.serverIp);
  buf.set(o.chaddr.subarray(0, 6), 28);
  writeIp(buf, 236, MAGIC_COOKIE);
  buf.set(opts, FIXED_LENGTH);
  return buf;
}

function ipBytes(ip: number): number[] {
  return [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff];
}
