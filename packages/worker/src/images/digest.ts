import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import { IiiError } from "../errors.js";

const SHA256 = /^sha256:[a-f0-9]{64}$/;

export function isSha256Digest(text: string): boolean {
  return SHA256.test(text);
}

/** Validates a digest taken from untrusted JSON before it is ever used to build a path. */
export function requireSha256Digest(text: unknown, what: string): string {
  if (typeof text !== "string" || !SHA256.test(text)) {
    throw new IiiError("ImageInvalid", `${what}: digest ${JSON.stringify(text)} is not sha256:<64 lowercase hex>`);
  }
  return text;
}

export function sha256Digest(data: string | Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export function digestHex(digest: string): string {
  return digest.slice("sha256:".length);
}

export function newSha256(): Hash {
  return createHash("sha256");
}

/** sha256 of a file's current bytes, or undefined when it cannot be read (gone, unreadable). */
export async function fileSha256(path: string): Promise<string | undefined> {
  const hash = createHash("sha256");
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  } catch {
    return undefined;
  }
  return `sha256:${hash.digest("hex")}`;
}
