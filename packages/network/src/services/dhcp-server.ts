import type { StackContext } from "../stack/context.js";
import { countDrop } from "../stack/counters.js";
import {
  DHCP_ACK,
  DHCP_DISCOVER,
  DHCP_INFORM,
  DHCP_NAK,
  DHCP_OFFER,
  DHCP_REQUEST,
  buildDhcpReply,
  parseDhcp,
} from "../wire/dhcp.js";
import { BROADCAST_MAC } from "../wire/ethernet.js";

/** DHCP server of the slot's /30: always offers the guest address, the gateway as router and DNS. */
export class DhcpServer {
  constructor(private readonly ctx: StackContext) {}

  receive(payload: Uint8Array): void {
    const ctx = this.ctx;
    const msg = parseDhcp(payload);
    if (!msg || msg.op !== 1) return countDrop(ctx.counters, "dhcp-malformed");
    const a = ctx.addresses;
    let type: number;
    if (msg.messageType === DHCP_DISCOVER) type = DHCP_OFFER;
    else if (msg.messageType === DHCP_REQUEST) {
      const wanted = msg.requestedIp ?? msg.ciaddr;
      const forUs = msg.serverId === undefined || msg.serverId === a.gatewayIp;
      if (!forUs) return;
      type = wanted === a.guestIp || wanted === 0 ? DHCP_ACK : DHCP_NAK;
    } else if (msg.messageType === DHCP_INFORM) type = DHCP_ACK;
    else return countDrop(ctx.counters, "dhcp-type");
    const reply = buildDhcpReply({
      messageType: type,
      xid: msg.xid,
      flags: msg.flags,
      chaddr: msg.chaddr,
      yiaddr: a.guestIp,
      serverIp: a.gatewayIp,
      subnetMask: a.netmask,
      router: a.gatewayIp,
      dnsServers: [a.gatewayIp],
      leaseSeconds: 86400,
      mtu: ctx.mtu,
    });
    // Broadcast: the client has no address yet (RFC 2131 §4.1).
    ctx.out.sendUdpRaw(a.gatewayIp, 0xffffffff, 67, 68, reply, BROADCAST_MAC);
  }
}
