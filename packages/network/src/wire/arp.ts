import { ETHERNET_HEADER_LENGTH, ETHERTYPE_ARP, ETHERTYPE_IPV4, writeEthernet } from "./ethernet.js";
import { readIp, writeIp } from "./ip-address.js";

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
const ARP_LENGTH = 28;

export interface ArpPacket {
  operation: number;
  senderMac: Uint8Array;
  senderIp: number;
  targetMac: Uint8Array;
  targetIp: number;
}

/** Parses an Ethernet/IPv4 ARP payload (RFC 826); anything else is undefined. */
export function parseArp(payload: Uint8Array): ArpPacket | undefined {
  if (payload.length < ARP_LENGTH) return undefined;
  const htype = (payload[0]! << 8) | payload[1]!;
  const ptype = (payload[2]! << 8) | payload[3]!;
  if (htype !== 1 || ptype !== ETHERTYPE_IPV4 || payload[4] !== 6 || payload[5] !== 4) return undefined;
  return {
    operation: (payload[6]! << 8) | payload[7]!,
    senderMac: payload.subarray(8, 14),
    senderIp: readIp(payload, 14),
    targetMac: payload.subarray(18, 24),
    targetIp: readIp(payload, 24),
  };
}

/** Builds a full Ethernet frame carrying an ARP packet. */
export function buildArpFrame(
  ethDst: Uint8Array,
  ethSrc: Uint8Array,
  operation: number,
  senderMac: Uint8Array,
  senderIp: number,
  targetMac: Uint8Array,
  targetIp: number,
): Buffer {
  const frame = Buffer.alloc(ETHERNET_HEADER_LENGTH + ARP_LENGTH);
  writeEthernet(frame, ethDst, ethSrc, ETHERTYPE_ARP);
  const o = ETHERNET_HEADER_LENGTH;
  frame.writeUInt16BE(1, o);
  frame.writeUInt16BE(ETHERTYPE_IPV4, o + 2);
  frame[o + 4] = 6;
  frame[o + 5] = 4;
  frame.writeUInt16BE(operation, o + 6);
  frame.set(senderMac, o + 8);
  writeIp(frame, o + 14, senderIp);
  frame.set(targetMac, o + 18);
  writeIp(frame, o + 24, targetIp);
  return frame;
}
