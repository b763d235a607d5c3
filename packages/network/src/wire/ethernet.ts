export const ETHERNET_HEADER_LENGTH = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export interface EthernetHeader {
  dst: Uint8Array;
  src: Uint8Array;
  etherType: number;
}

/** Returns undefined for frames too short to hold an Ethernet header. Views, no copies. */
export function parseEthernet(frame: Uint8Array): EthernetHeader | undefined {
  if (frame.length < ETHERNET_HEADER_LENGTH) return undefined;
  return {
    dst: frame.subarray(0, 6),
    src: frame.subarray(6, 12),
    etherType: (frame[12]! << 8) | frame[13]!,
  };
}

export function writeEthernet(buf: Uint8Array, dst: Uint8Array, src: Uint8Array, etherType: number): void {
  buf.set(dst, 0);
  buf.set(src, 6);
  buf[12] = etherType >>> 8;
  buf[13] = etherType & 0xff;
}

export function macEquals(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}
