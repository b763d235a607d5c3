import { afterEach, describe, expect, it, vi } from "vitest";

/** bytes.js as QuickJS runs it: loaded without TextEncoder/TextDecoder, so its own decoder is the one used. */
async function withoutTextCodec(): Promise<typeof import("./bytes.js")> {
  vi.resetModules();
  vi.stubGlobal("TextEncoder", undefined);
  vi.stubGlobal("TextDecoder", undefined);
  return import("./bytes.js");
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.resetModules();
});

const encoder = new TextEncoder();

describe("utf8Decode without a platform decoder (the static init)", () => {
  const reference = new TextDecoder("utf-8", { fatal: true });

  it("decodes ASCII of any length, across the native fast path's chunks", async () => {
    const { utf8Decode } = await withoutTextCodec();
    expect(utf8Decode(new Uint8Array())).toBe("");
    const text = Array.from({ length: 20_000 }, (_, i) => String.fromCharCode(i % 128)).join("");
    expect(utf8Decode(encoder.encode(text))).toBe(text);
  });

  it("decodes multi-byte UTF-8 (anywhere in a long text) like TextDecoder", async () => {
    const { utf8Decode } = await withoutTextCodec();
    for (const text of ["héllo", "naïve ☃ 😀", `${"a".repeat(9000)}é${"b".repeat(9000)}😀`]) {
      const bytes = encoder.encode(text);
      expect(utf8Decode(bytes)).toBe(reference.decode(bytes));
    }
  });

  it("refuses malformed UTF-8 as TextDecoder's fatal mode does, also after a long ASCII run", async () => {
    const { utf8Decode } = await withoutTextCodec();
    for (const bad of [[0xff], [0xc3], [0x61, 0x80], [0xed, 0xa0, 0x80], [...new Array(10_000).fill(0x61), 0xc0, 0xaf]]) {
      const bytes = Uint8Array.from(bad);
      expect(() => reference.decode(bytes)).toThrow(TypeError);
      expect(() => utf8Decode(bytes)).toThrow(TypeError);
    }
  });
});
