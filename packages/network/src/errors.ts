/** Stable error codes of @iii/network; callers switch on `code`, never on messages. */
export type NetworkErrorCode =
  | "InvalidConfig"
  | "SlotOutOfRange"
  | "PolicyDenied"
  | "AlreadyListening"
  | "StackClosed"
  | "TransportError"
  | "DnsError";

export class NetworkError extends Error {
  readonly code: NetworkErrorCode;
  constructor(code: NetworkErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NetworkError";
    this.code = code;
  }
}

/** Raised (and emitted as a `denied` event) when the egress policy refuses a flow. */
export class PolicyDeniedError extends NetworkError {
  readonly rule: string;
  constructor(message: string, rule: string, options?: { cause?: unknown }) {
    super("PolicyDenied", message, options);
    this.name = "PolicyDeniedError";
    this.rule = rule;
  }
}
