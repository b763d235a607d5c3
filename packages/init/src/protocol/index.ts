export {
  PROTOCOL_VERSION,
  HEADER_BYTES,
  MAX_PAYLOAD_BYTES,
  MAX_DATA_CHUNK_BYTES,
  INITIAL_WINDOW_BYTES,
  CONTROL_STREAM,
  CONTROL_PORT_NAME,
  FrameType,
  FrameDecoder,
  ProtocolError,
  encodeFrame,
  frameTypeName,
} from "./frame.js";
export type { Frame, FrameTypeName, FrameTypeCode } from "./frame.js";
export { frameToMessage, messageToFrame } from "./messages.js";
export type * from "./messages.js";
export { ControlChannel, ChannelClosedError } from "./channel.js";
export type { ControlChannelOptions, ControlChannelEvents } from "./channel.js";
export { HostControl, PingTimeoutError, ProtocolVersionError } from "./host.js";
export type { ExecSession, HostControlEvents } from "./host.js";
