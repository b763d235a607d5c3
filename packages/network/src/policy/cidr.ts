import { NetworkError } from "../errors.js";
import { parseIp } from "../wire/ip-address.js";

export interface Cidr {
  network: number;
  prefix: number;
  text: string;
}

export function parseCidr(text: string): Cidr {
  if (text.includes(":")) {
    throw new NetworkError("InvalidConfig", `IPv6 CIDR "${text}" is not supported: the stack relays IPv4 only (guest IPv6 is refused)`);
  }
  const [addr, bits] = text.split("/");
  const ip = addr === undefined ? undefined : parseIp(addr);
  const prefix = bits === undefined ? 32 : Number(bits);
  if (ip === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new NetworkError("InvalidConfig", `invalid IPv4 CIDR "${text}"`);
  }
  const mask = prefixMask(prefix);
  return { network: (ip & mask) >>> 0, prefix, text };
}

function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ((ip & prefixMask(c.prefix)) >>> 0) === c.network;
}

