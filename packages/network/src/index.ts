export { NetworkStack, DEFAULT_LIMITS } from "./stack/network-stack.js";
export type { NetworkStackOptions, NetworkStackEvents, NetworkLimits, PublishedPort, DenialEvent } from "./stack/network-stack.js";
export { slotAddresses } from "./stack/addressing.js";
export type { SlotAddresses } from "./stack/addressing.js";
export type { StackCounters } from "./stack/counters.js";
export { NetworkError, PolicyDeniedError } from "./errors.js";
export type { NetworkErrorCode } from "./errors.js";
export { EgressPolicy, DEFAULT_ENGINE_PORT, PRECEDENCE_TEXT, readHostAddresses } from "./policy/egress-policy.js";
export type {
  EgressPolicyOptions,
  EgressRule,
  NetworkMode,
  PolicyDecision,
  PolicyDescription,
  DescribedRule,
  Protocol,
} from "./policy/egress-policy.js";
export { SPECIAL_IPV4_RANGES, SPECIAL_IPV6_RANGES, specialIpv6Range } from "./policy/special-ranges.js";
export type { SpecialRange } from "./policy/special-ranges.js";
export { ConnectionTracker } from "./conntrack/connection-tracker.js";
export type { FlowEntry, FlowSnapshot, FlowProtocol, ConnectionTrackerLimits } from "./conntrack/connection-tracker.js";
export { DnsInterceptor } from "./dns/dns-interceptor.js";
export type { DnsOptions, DnsCounters } from "./dns/dns-interceptor.js";
export { TcpConnection } from "./tcp/tcp-connection.js";
export type { TcpState, TcpCloseReason, TcpConnectionHooks, TcpConnectionConfig, TimerHost, OutgoingSegment } from "./tcp/tcp-connection.js";
export { FrameDecoder } from "./transport/frame-decoder.js";
export type { TransportInputStats } from "./transport/frame-server.js";
export { PcapWriter } from "./stack/pcap-writer.js";
export { ipToString, parseIp } from "./wire/ip-address.js";
export const PACKAGE_NAME = "@iii/network";
