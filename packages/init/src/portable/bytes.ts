// Byte helpers that run unchanged on Node and on QuickJS (the static init):
// no Buffer, no Node imports. QuickJS has no TextEncoder/TextDecoder/atob, so
// each helper uses the platform's when present and a small JS version otherwise.

const hasTextCodec = typeof TextEncoder === "function" && typeof TextDecoder === "function";
const encoder = hasTextCodec ? new TextEncoder() : null;
const fatalDecoder = hasTextCodec ? new TextDecoder("utf-8", { fatal: true }) : null;

export function utf8Encode(text: string): Uint8Array {
  if (encoder) return encoder.encode(text);
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else c = 0xfffd;
    } else if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/** Bytes per String.fromCharCode.apply call (QuickJS refuses more than 65535 arguments). */
const APPLY_CHUNK = 8192;

/** Every byte as one char code: the engine's own loop, not a JS one (no platform decoder under QuickJS). */
function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += APPLY_CHUNK) out += String.fromCharCode.apply(null, bytes.subarray(i, i + APPLY_CHUNK) as unknown as number[]);
  return out;
}

/** Strict UTF-8 decode: throws TypeError on malformed input (like TextDecoder's fatal mode). */
export function utf8Decode(bytes: Uint8Array): string {
  if (fatalDecoder) return fatalDecoder.decode(bytes);
  // ASCII (nearly everything init reads: the env file, /proc, /etc, the protocol's JSON) in native calls; the
  // byte-by-byte loop below costs the guest ~5 ms per KiB under TCG.
  const ascii = latin1(bytes);
  if (!/[^\x00-\x7f]/.test(ascii)) return ascii;
  let out = "";
  const bad = (): never => {
    throw new TypeError("The encoded data was not valid for encoding utf-8");
  };
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i]!;
    let cp: number;
    let n: number;
    if (b < 0x80) {
      cp = b;
      n = 0;
    } else if (b >= 0xc2 && b < 0xe0) {
      cp = b & 0x1f;
      n = 1;
    } else if (b >= 0xe0 && b < 0xf0) {
      cp = b & 0x0f;
      n = 2;
    } else if (b >= 0xf0 && b < 0xf5) {
      cp = b & 0x07;
      n = 3;
    } else return bad();
    for (let k = 1; k <= n; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return bad();
      cp = (cp << 6) | (c & 0x3f);
    }
    if ((n === 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n === 3 && (cp < 0x10000 || cp > 0x10ffff))) return bad();
    i += n + 1;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += String.fromCharCode(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
    } else out += String.fromCharCode(cp);
  }
  return out;
}

const HEX = "0123456789abcdef";

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]! >> 4]! + HEX[bytes[i]! & 15]!;
  return s;
}

export function fromHex(hex: string): Uint8Array {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new TypeError("not a hex string");
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i]!;
    const b = bytes[i + 1];
    const c = bytes[i + 2];
    const n = (a << 16) | ((b ?? 0) << 8) | (c ?? 0);
    s += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + (b === undefined ? "=" : B64[(n >> 6) & 63]!) + (c === undefined ? "=" : B64[n & 63]!);
  }
  return s;
}

/** Lenient like Node's Buffer.from(s, "base64"): accepts base64url, skips other characters, padding optional. */
export function fromBase64(text: string): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "=") break;
    let v = B64.indexOf(ch);
    if (ch === "-") v = 62;
    else if (ch === "_") v = 63;
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

export function concatBytes(parts: readonly Uint8Array[], total?: number): Uint8Array {
  const size = total ?? parts.reduce((n, p) => n + p.byteLength, 0);
  const out = new Uint8Array(size);
  let offset = 0;
  for (const p of parts) {
    if (offset >= size) break;
    const part = offset + p.byteLength > size ? p.subarray(0, size - offset) : p;
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
