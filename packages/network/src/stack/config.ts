import type { DnsOptions } from "../dns/dns-interceptor.js";
import type { EgressPolicyOptions } from "../policy/egress-policy.js";

export interface PublishedPort {
  /** Port on the host (bound on `hostAddress`, default 127.0.0.1). */
  hostPort: number;
  /** Port in the guest the stack connects to. */
  guestPort: number;
  hostAddress?: string;
}

export interface NetworkLimits {
  maxTcpFlows: number;
  maxUdpFlows: number;
  udpIdleTimeoutMs: number;
  tcpIdleTimeoutMs: number;
  connectTimeoutMs: number;
  timeWaitMs: number;
  /** Ceiling of the per-connection receive buffer (guest bytes the host socket has not taken yet). */
  tcpReceiveBufferBytes: number;
  /**
   * Receive-buffer budget shared by all TCP flows of the VM: each flow's window is its share of it (at least
   * TCP_RECEIVE_FLOOR_BYTES), so a guest with thousands of connections to peers that never read holds this much
   * of the host's memory, not thousands of full buffers.
   */
  tcpReceiveBudgetBytes: number;
  /** Floor of the per-connection send buffer (host bytes read ahead of the guest's ACKs). */
  tcpSendHighWaterBytes: number;
  /** Ceiling of the per-connection send buffer. */
  tcpSendBufferMaxBytes: number;
  /** Send-buffer budget shared by all TCP flows of the VM. */
  tcpSendBudgetBytes: number;
  tcpMaxRetries: number;
}

export interface NetworkStackOptions {
  /** 0..65535: selects the /30 in 100.96.0.0/11 and the MACs (DESIGN §6). */
  slot: number;
  policy?: EgressPolicyOptions;
  dns?: DnsOptions;
  ports?: PublishedPort[];
  /** Guest MTU (default 1500; 576..65520). */
  mtu?: number;
  limits?: Partial<NetworkLimits>;
  /** Write every frame (both directions) to this pcap file. */
  pcapPath?: string;
  /** Log sink; default writes to stderr. */
  log?: (line: string) => void;
}

export const DEFAULT_LIMITS: NetworkLimits = {
  maxTcpFlows: 4096,
  maxUdpFlows: 1024,
  udpIdleTimeoutMs: 60_000,
  tcpIdleTimeoutMs: 2 * 60 * 60_000,
  connectTimeoutMs: 10_000,
  timeWaitMs: 2_000,
  tcpReceiveBufferBytes: 1024 * 1024,
  tcpReceiveBudgetBytes: 64 * 1024 * 1024,
  tcpSendHighWaterBytes: 512 * 1024,
  tcpSendBufferMaxBytes: 4 * 1024 * 1024,
  tcpSendBudgetBytes: 64 * 1024 * 1024,
  tcpMaxRetries: 10,
};
