// The guest init (dist/init.krun, QuickJS + iii:sys; `pnpm build:static`):
// the guest half of the golden-file contract, run on the host. The files in
// test/fixtures are the contract: contract.test.ts checks the Node host's
// encoder against them, this checks the guest build decodes and re-encodes
// them byte for byte and decodes the env contract to the same configuration.
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { decodeGuestEnv } from "../src/index.js";
import { INIT_BINARY as STATIC } from "./harness.js";

const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
const missing = existsSync(STATIC) ? null : `${STATIC} missing (pnpm --filter @iii/init build:static)`;
if (missing) console.log(`[init static tests] skipped: ${missing}`);

type Attempt<T> = { ok: T } | { error: string; exitCode?: number };
interface Report {
  engine: string;
  frames: {
    vectors: Attempt<{ name: string; decoded: unknown; reencoded: string; encoded: string }>[];
    streamed: unknown[];
    pending: number;
  };
  env: {
    encode: Attempt<{ name: string; env: unknown; envFile: string; cmdline: string; viaFile: unknown; viaCmdline: unknown }>[];
    decode: Attempt<{ name: string; config: unknown }>[];
    reject: Attempt<unknown>[];
  };
}

const ok = <T>(a: Attempt<T>): T => {
  if ("error" in a) throw new Error(`guest failed: ${a.error}`);
  return a.ok;
};

describe.skipIf(missing !== null)("static init: golden files decoded and re-encoded by the guest build", () => {
  const frames = JSON.parse(readFileSync(fixture("frames.json"), "utf8")) as { vectors: { name: string; message: unknown; hex: string }[] };
  const env = JSON.parse(readFileSync(fixture("env-contract.json"), "utf8")) as {
    encode: { name: string; env: Record<string, string>; envFile: string; cmdline: string }[];
    decode: { name: string; env: Record<string, string>; config: unknown }[];
    reject: { name: string; message: string; exitCode: number }[];
  };
  const report = (): Report =>
    JSON.parse(execFileSync(STATIC, ["--golden", fixture("frames.json"), fixture("env-contract.json")], { encoding: "utf8", env: {} })) as Report;
  const r = missing ? null : report();

  it("is one statically linked ELF of at most 5 MB", () => {
    expect(execFileSync("file", ["-b", STATIC], { encoding: "utf8" })).toMatch(/statically linked/);
    expect(statSync(STATIC).size).toBeLessThanOrEqual(5 * 1024 * 1024);
    // QuickJS has no TextEncoder: the guest runs the portable UTF-8 code, not Node's.
    expect(r!.engine).toBe("portable");
  });

  it("decodes every frame vector to the pinned message and encodes the same bytes both ways", () => {
    expect(r!.frames.vectors).toHaveLength(frames.vectors.length);
    r!.frames.vectors.forEach((a, i) => {
      const v = frames.vectors[i]!;
      const got = ok(a);
      expect(got.name).toBe(v.name);
      expect(got.decoded, v.name).toEqual(v.message);
      expect(got.reencoded, v.name).toBe(v.hex);
      expect(got.encoded, v.name).toBe(v.hex);
    });
  });

  it("decodes all vectors concatenated, fed one byte at a time", () => {
    expect(r!.frames.streamed).toEqual(frames.vectors.map((v) => v.message));
    expect(r!.frames.pending).toBe(0);
  });

  it("encodes the env contract like the host and decodes it to the same config by every route", () => {
    r!.env.encode.forEach((a, i) => {
      const c = env.encode[i]!;
      const got = ok(a);
      expect(got.env, c.name).toEqual(c.env);
      expect(Object.keys(got.env as object), c.name).toEqual(Object.keys(c.env));
      expect(got.envFile, c.name).toBe(c.envFile);
      expect(got.cmdline, c.name).toBe(c.cmdline);
      const expected = JSON.parse(JSON.stringify(decodeGuestEnv(c.env)));
      expect(got.viaFile, c.name).toEqual(expected);
      expect(got.viaCmdline, c.name).toEqual(expected);
    });
    r!.env.decode.forEach((a, i) => expect(ok(a).config, env.decode[i]!.name).toEqual(env.decode[i]!.config));
  });

  it("rejects every bad env with the pinned message and exit code", () => {
    r!.env.reject.forEach((a, i) => {
      const c = env.reject[i]!;
      expect(a, c.name).toEqual({ error: c.message, exitCode: c.exitCode });
    });
  });
});
