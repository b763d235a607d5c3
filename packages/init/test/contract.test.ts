// Wire-format contract: the checked-in vectors are what every released host
// and guest must produce and accept. Changing them is a protocol change: bump
// PROTOCOL_VERSION and keep the old vectors decodable.
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import {
  ContractError,
  decodeGuestEnv,
  encodeEnvFile,
  encodeGuestEnv,
  encodeKernelCmdlineEnv,
  mergeEnvSources,
  type GuestSpec,
} from "../src/index.js";
import { ExitCode } from "../src/errors.js";
import { FrameDecoder, encodeFrame, frameToMessage, messageToFrame, PROTOCOL_VERSION, type Message } from "../src/protocol/index.js";
import { fileURLToPath } from "node:url";

const fixturePath = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

interface FrameVector {
  name: string;
  message: Record<string, unknown>;
  hex: string;
}

const frameFixture = JSON.parse(readFileSync(fixturePath("frames.json"), "utf8")) as {
  protocol: number;
  vectors: FrameVector[];
};

function toMessage(v: FrameVector): Message {
  const m = { ...v.message } as Record<string, unknown>;
  if (typeof m.dataHex === "string") {
    m.data = new Uint8Array(Buffer.from(m.dataHex, "hex"));
    delete m.dataHex;
  }
  return m as unknown as Message;
}

function fromMessage(m: Message | { type: "UNKNOWN" }): Record<string, unknown> {
  const out = { ...m } as Record<string, unknown>;
  if (out.data instanceof Uint8Array) {
    out.dataHex = Buffer.from(out.data).toString("hex");
    delete out.data;
  }
  return out;
}

describe("frame vectors (test/fixtures/frames.json)", () => {
  it("pins the protocol version", () => {
    expect(frameFixture.protocol).toBe(PROTOCOL_VERSION);
    expect(frameFixture.vectors.length).toBeGreaterThanOrEqual(19);
  });
  for (const vector of frameFixture.vectors) {
    it(`${vector.name}: encoder produces the vector and decoder reads it back`, () => {
      expect(Buffer.from(encodeFrame(messageToFrame(toMessage(vector)))).toString("hex")).toBe(vector.hex);
      const frames = new FrameDecoder().push(Buffer.from(vector.hex, "hex"));
      expect(frames).toHaveLength(1);
      expect(fromMessage(frameToMessage(frames[0]!))).toEqual(vector.message);
    });
  }
  it("decodes all vectors concatenated and fed one byte at a time", () => {
    const all = Buffer.from(frameFixture.vectors.map((v) => v.hex).join(""), "hex");
    const decoder = new FrameDecoder();
    const frames = [];
    for (const byte of all) frames.push(...decoder.push(Uint8Array.of(byte)));
    expect(frames.map((f) => fromMessage(frameToMessage(f)))).toEqual(frameFixture.vectors.map((v) => v.message));
    expect(decoder.pendingBytes).toBe(0);
  });
  it("delivers an unknown frame type as UNKNOWN instead of failing", () => {
    const [frame] = new FrameDecoder().push(Buffer.from("00000002" + "7e" + "00000005" + "abcd", "hex"));
    expect(frameToMessage(frame!)).toEqual({ type: "UNKNOWN", stream: 5, code: 0x7e, payload: Uint8Array.of(0xab, 0xcd) });
  });
  it("rejects a frame larger than MAX_PAYLOAD_BYTES", () => {
    expect(() => new FrameDecoder().push(Buffer.from("7fffffff0100000000", "hex"))).toThrow(/more than/);
  });
  it("rejects an EXEC whose env is a list (the wasm-runner incident)", () => {
    const frame = { type: 0x10, stream: 1, payload: new TextEncoder().encode('{"argv":["x"],"env":["A=1"]}') };
    expect(() => frameToMessage(frame)).toThrow(/"env" must be an object of strings/);
  });
});

interface EnvFixture {
  encode: Array<{ name: string; spec: GuestSpec; env: Record<string, string>; envFile: string; cmdline: string }>;
  decode: Array<{ name: string; env: Record<string, string>; config: unknown }>;
  reject: Array<{ name: string; env: Record<string, string>; message: string; exitCode: number }>;
}

const envFixture = JSON.parse(readFileSync(fixturePath("env-contract.json"), "utf8")) as EnvFixture;

describe("env contract (test/fixtures/env-contract.json)", () => {
  for (const c of envFixture.encode) {
    it(`encode ${c.name}`, () => {
      expect(encodeGuestEnv(c.spec)).toEqual(c.env);
      expect(Object.keys(encodeGuestEnv(c.spec))).toEqual(Object.keys(c.env));
      expect(encodeEnvFile(c.spec)).toBe(c.envFile);
      expect(encodeKernelCmdlineEnv(c.spec)).toBe(c.cmdline);
      // Whatever the host encodes, the guest decodes to the same thing by either route.
      const viaFile = decodeGuestEnv(mergeEnvSources({ III_INIT_ENV_FILE: "/.iii/env.json" }, c.envFile));
      const viaCmdline = decodeGuestEnv(
        mergeEnvSources({ III_INIT_ENV_B64: c.cmdline.slice("III_INIT_ENV_B64=".length) }, null),
      );
      expect(viaFile).toEqual(decodeGuestEnv(c.env));
      expect(viaCmdline).toEqual(decodeGuestEnv(c.env));
    });
  }
  for (const c of envFixture.decode) {
    it(`decode ${c.name}`, () => {
      expect(JSON.parse(JSON.stringify(decodeGuestEnv(c.env)))).toEqual(c.config);
    });
  }
  for (const c of envFixture.reject) {
    it(`reject ${c.name}`, () => {
      let error: unknown;
      try {
        decodeGuestEnv(c.env);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ContractError);
      expect((error as ContractError).message).toBe(c.message);
      expect((error as ContractError).exitCode).toBe(c.exitCode);
      expect(c.exitCode).toBe(ExitCode.BadEnv);
    });
  }
  it("refuses workload env that would override the contract", () => {
    expect(() => encodeGuestEnv({ cmd: ["x"], env: { III_INIT_IP: "1.2.3.4" } })).toThrow(ContractError);
    expect(() => encodeGuestEnv({ cmd: ["x"], env: { III_WORKER_CMD: "y" } })).toThrow(ContractError);
  });
});
