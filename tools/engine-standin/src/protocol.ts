/**
 * The subset of the iii engine's worker protocol that the stand-in speaks.
 *
 * Every frame is one JSON text message with a lowercase `type` tag (the engine's `Message` enum is serde
 * `tag = "type", rename_all = "lowercase"`). Field names are the engine's: `registerfunction.id`,
 * `invokefunction.{invocation_id, function_id, data}`, `invocationresult.{invocation_id, result | error}`,
 * `workerregistered.{worker_id, reattach_token}`. An `invokefunction` without `invocation_id` is
 * fire-and-forget (the SDK's `TriggerAction.Void()`): no result is sent back.
 */

export interface ErrorBody {
  code: string;
  message: string;
  stacktrace?: string;
}

export type WorkerToEngine =
  | { type: "registerfunction"; id: string; description?: string; metadata?: unknown; invocation?: unknown }
  | { type: "unregisterfunction"; id: string }
  | {
      type: "invokefunction";
      invocation_id?: string;
      function_id: string;
      data?: unknown;
      action?: { type: string };
      metadata?: unknown;
    }
  | { type: "invocationresult"; invocation_id: string; function_id?: string; result?: unknown; error?: ErrorBody }
  | { type: "registertrigger"; id: string; trigger_type: string; function_id: string; config?: unknown }
  | { type: "unregistertrigger"; id: string; trigger_type?: string }
  | { type: "registertriggertype"; id: string; description?: string }
  | { type: "unregistertriggertype"; id: string }
  | { type: "registerservice"; id: string; name?: string }
  | { type: "reattach"; previous_worker_id: string; reattach_token?: string }
  | { type: "ping" }
  | { type: "pong" };

export type EngineToWorker =
  | { type: "workerregistered"; worker_id: string; reattach_token: string }
  | { type: "invokefunction"; invocation_id?: string; function_id: string; data: unknown }
  | { type: "invocationresult"; invocation_id: string; function_id: string; result?: unknown; error?: ErrorBody }
  | { type: "pong" };

const KNOWN_TYPES = new Set<string>([
  "registerfunction",
  "unregisterfunction",
  "invokefunction",
  "invocationresult",
  "registertrigger",
  "unregistertrigger",
  "registertriggertype",
  "unregistertriggertype",
  "registerservice",
  "reattach",
  "ping",
  "pong",
]);

/** Why a frame was not understood; the stand-in reports it as an event rather than dropping the socket. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

/** Parses one text frame from a worker. Unknown but well-formed message types are returned as `null`. */
export function parseWorkerMessage(text: string): WorkerToEngine | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError(`frame is not JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError("frame is not a JSON object");
  }
  const record = value as Record<string, unknown>;
  const type = record.type;
  if (typeof type !== "string") throw new ProtocolError('frame has no string "type"');
  if (!KNOWN_TYPES.has(type)) return null;
  const requireString = (field: string): void => {
    if (typeof record[field] !== "string" || record[field] === "") {
      throw new ProtocolError(`${type} frame has no string "${field}"`);
    }
  };
  switch (type) {
    case "registerfunction":
    case "unregisterfunction":
    case "registertriggertype":
    case "unregistertriggertype":
    case "registerservice":
    case "unregistertrigger":
      requireString("id");
      break;
    case "registertrigger":
      requireString("id");
      requireString("trigger_type");
      requireString("function_id");
      break;
    case "invokefunction":
      requireString("function_id");
      if (record.invocation_id !== undefined && record.invocation_id !== null) requireString("invocation_id");
      break;
    case "invocationresult":
      requireString("invocation_id");
      break;
    case "reattach":
      requireString("previous_worker_id");
      break;
  }
  return record as unknown as WorkerToEngine;
}

export function encodeEngineMessage(message: EngineToWorker): string {
  return JSON.stringify(message);
}
