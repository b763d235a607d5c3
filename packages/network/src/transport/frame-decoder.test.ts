import { describe, expect, test } from "vitest";
import { FrameDecoder, encodeFrameLength } from "./frame-decoder.js";

const framed = (...frames: Buffer[]) => Buffer.concat(frames.flatMap((f) => [encodeFrameLength(f.length), f]));

describe("FrameDecoder", () => {
  test("splits frames across arbitrary chunk boundaries", () => {
    const frames = [Buffer.alloc(60, 1), Buffer.alloc(1514, 2), Buffer.alloc(65534, 3)];
    const stream = framed(...frames);
    for (const step of [1, 3, 7, 1000, stream.length]) {
      const d = new FrameDecoder(65550);
      const got: Buffer[] = [];
      for (let i = 0; i < stream.length; i += step) expect(d.push(stream.subarray(i, i + step), (f) => got.push(Buffer.from(f)))).toBeUndefined();
      expect(got).toEqual(frames);
      expect(d.bufferedBytes).toBe(0);
    }
  });
  test("a zero or oversized length is reported, not thrown", () => {
    expect(new FrameDecoder(100).push(encodeFrameLength(0), () => {})).toMatch(/malformed frame length 0/);
    expect(new FrameDecoder(100).push(encodeFrameLength(0xffffffff), () => {})).toMatch(/malformed/);
  });
});
