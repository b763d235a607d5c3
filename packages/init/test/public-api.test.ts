// What @iii/worker imports: the built entry point, not the sources.
import { describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const entry = fileURLToPath(new URL("../dist/index.js", import.meta.url));

describe.skipIf(!existsSync(entry))("@iii/init public entry (dist/index.js)", () => {
  it("exports the host API and the guest contract encoder", async () => {
    const api = (await import(entry)) as Record<string, unknown>;
    for (const name of [
      "HostControl",
      "ProtocolVersionError",
      "PROTOCOL_VERSION",
      "CONTROL_PORT_NAME",
      "ENV",
      "ContractError",
      "encodeGuestEnv",
      "encodeEnvFile",
      "encodeKernelCmdlineEnv",
      "decodeGuestEnv",
      "mergeEnvSources",
      "ExitCode",
      "GUEST_PATHS",
      "parsePasswd",
      "protocol",
    ]) {
      expect(api[name], name).toBeDefined();
    }
    expect(api.GUEST_PATHS).toEqual({ init: "/init.krun", runtimeDir: "/.iii", envFile: "/.iii/env.json" });
    expect(api.CONTROL_PORT_NAME).toBe("iii.control");
    const protocol = api.protocol as Record<string, unknown>;
    for (const name of ["encodeFrame", "FrameDecoder", "messageToFrame", "frameToMessage", "ControlChannel", "FrameType"]) {
      expect(protocol[name], name).toBeDefined();
    }
    // The host-side entry must not drag the guest's koffi bindings in.
    expect(Object.keys(api)).not.toContain("libc");
  });
});
