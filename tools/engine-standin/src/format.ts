import type { StandinEvent } from "./engine-standin.js";

const short = (workerId: string): string => workerId.slice(0, 8);

function render(value: unknown): string {
  return value === undefined ? "undefined" : JSON.stringify(value);
}

/** One line per event: human text, or one JSON object with `--json`. */
export function formatEvent(event: StandinEvent, json: boolean): string {
  if (json) {
    const { kind, ...rest } = event;
    return JSON.stringify({ event: kind, ...rest });
  }
  switch (event.kind) {
    case "worker-connected":
      return `worker connected ${short(event.workerId)} from ${event.remoteAddress}`;
    case "worker-identified":
      return `worker ${short(event.workerId)} is ${event.name ?? "?"} (${event.runtime ?? "?"} iii-sdk ${event.sdkVersion ?? "?"}${event.isolation ? `, isolation ${event.isolation}` : ""})`;
    case "worker-disconnected":
      return `worker disconnected ${short(event.workerId)}`;
    case "function-registered":
      return `function registered ${event.functionId} (worker ${short(event.workerId)})`;
    case "function-unregistered":
      return `function unregistered ${event.functionId} (worker ${short(event.workerId)})`;
    case "trigger-registered":
      return `trigger registered ${event.triggerType} → ${event.functionId} (recorded only: the stand-in never fires triggers)`;
    case "invoked":
      return event.error
        ? `invoked ${event.functionId} ✗ ${event.error.code}: ${event.error.message}`
        : `invoked ${event.functionId} → ${render(event.result)}`;
    case "protocol-error":
      return `protocol error from worker ${short(event.workerId)}: ${event.message}`;
  }
}
