// `init.krun --golden <frames.json> <env-contract.json>`: the guest side of the
// golden-file contract. Decodes every frame vector and re-encodes it, encodes
// every message, runs every env case through the guest's decoder, and prints
// the results as JSON for test/static.test.ts to compare with the files.

import { ContractError, decodeGuestEnv, encodeEnvFile, encodeGuestEnv, encodeKernelCmdlineEnv, mergeEnvSources, type GuestSpec } from "../contract/env.js";
import { fromHex, toHex } from "../portable/bytes.js";
import { encodeFrame, FrameDecoder } from "../protocol/frame.js";
import { frameToMessage, messageToFrame, type Message } from "../protocol/messages.js";

interface FrameVector {
  name: string;
  message: Record<string, unknown>;
  hex: string;
}

function toMessage(m: Record<string, unknown>): Message {
  const out = { ...m };
  if (typeof out.dataHex === "string") {
    out.data = fromHex(out.dataHex);
    delete out.dataHex;
  }
  return out as unknown as Message;
}

function fromMessage(m: object): Record<string, unknown> {
  const out = { ...m } as Record<string, unknown>;
  for (const key of ["data", "payload"]) {
    if (out[key] instanceof Uint8Array) {
      out[`${key}Hex`] = toHex(out[key] as Uint8Array);
      delete out[key];
    }
  }
  return out;
}

function attempt<T>(fn: () => T): { ok: T } | { error: string; exitCode?: number } {
  try {
    return { ok: fn() };
  } catch (err) {
    return { error: (err as Error).message, ...(err instanceof ContractError ? { exitCode: err.exitCode } : {}) };
  }
}

export function goldenReport(framesText: string, envText: string): unknown {
  const frames = JSON.parse(framesText) as { protocol: number; vectors: FrameVector[] };
  const env = JSON.parse(envText) as {
    encode: Array<{ name: string; spec: GuestSpec; envFile: string; cmdline: string }>;
    decode: Array<{ name: string; env: Record<string, string> }>;
    reject: Array<{ name: string; env: Record<string, string> }>;
  };
  const vectors = frames.vectors.map((v) =>
    attempt(() => {
      const decoded = new FrameDecoder().push(fromHex(v.hex));
      if (decoded.length !== 1) throw new Error(`${decoded.length} frames`);
      const message = frameToMessage(decoded[0]!);
      return {
        name: v.name,
        decoded: fromMessage(message),
        reencoded: toHex(encodeFrame(messageToFrame(message as Message))),
        encoded: toHex(encodeFrame(messageToFrame(toMessage(v.message)))),
      };
    }),
  );
  // All vectors concatenated, fed one byte at a time.
  const all = fromHex(frames.vectors.map((v) => v.hex).join(""));
  const decoder = new FrameDecoder();
  const streamed: Record<string, unknown>[] = [];
  for (let i = 0; i < all.length; i++) for (const f of decoder.push(all.subarray(i, i + 1))) streamed.push(fromMessage(frameToMessage(f)));

  return {
    engine: typeof TextEncoder === "function" ? "with TextEncoder" : "portable",
    frames: { vectors, streamed, pending: decoder.pendingBytes },
    env: {
      encode: env.encode.map((c) =>
        attempt(() => ({
          name: c.name,
          env: encodeGuestEnv(c.spec),
          envFile: encodeEnvFile(c.spec),
          cmdline: encodeKernelCmdlineEnv(c.spec),
          viaFile: decodeGuestEnv(mergeEnvSources({ III_INIT_ENV_FILE: "/.iii/env.json" }, c.envFile)),
          viaCmdline: decodeGuestEnv(mergeEnvSources({ III_INIT_ENV_B64: c.cmdline.slice("III_INIT_ENV_B64=".length) }, null)),
        })),
      ),
      decode: env.decode.map((c) => attempt(() => ({ name: c.name, config: decodeGuestEnv(c.env) }))),
      reject: env.reject.map((c) => attempt(() => decodeGuestEnv(c.env))),
    },
  };
}
