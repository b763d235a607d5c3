import { NetworkError } from "../errors.js";

/** Base of the per-VM pool 100.96.0.0/11 (DESIGN §6). */
const POOL_BASE = (100 << 24) | (96 << 16);
export const SUBNET_MASK = 0xfffffffc;

export interface SlotAddresses {
  slot: number;
  gatewayIp: number;
  guestIp: number;
  netmask: number;
  gatewayMac: Uint8Array;
  guestMac: Uint8Array;
}

/** Slot s owns the /30 at 100.96.0.0 + 4s: gateway +1, guest +2, MACs 02:6d:73:HH:LL:01/02. */
export function slotAddresses(slot: number): SlotAddresses {
  if (!Number.isInteger(slot) || slot < 0 || slot > 0xffff) {
    throw new NetworkError("SlotOutOfRange", `slot ${slot} is outside 0..65535`);
  }
  const base = (POOL_BASE + slot * 4) >>> 0;
  const hh = slot >>> 8;
  const ll = slot & 0xff;
  return {
    slot,
    gatewayIp: (base + 1) >>> 0,
    guestIp: (base + 2) >>> 0,
    netmask: SUBNET_MASK >>> 0,
    gatewayMac: new Uint8Array([0x02, 0x6d, 0x73, hh, ll, 0x01]),
    guestMac: new Uint8Array([0x02, 0x6d, 0x73, hh, ll, 0x02]),
  };
}
