import type { Option } from "commander";
import { describe, expect, it } from "vitest";
import { buildProgram } from "./program.js";
import { START_VALUE_OPTIONS, startNameOf } from "./early-standby.js";

describe("startNameOf (the worker cli.ts spawns a standby supervisor for before commander parses)", () => {
  it("names the one worker of a start, past global flags and options (with their values)", () => {
    expect(startNameOf(["start", "app"])).toBe("app");
    expect(startNameOf(["--debug", "start", "app"])).toBe("app");
    expect(startNameOf(["start", "--timings", "app", "--fresh"])).toBe("app");
    expect(startNameOf(["start", "--engine-url", "http://127.0.0.1:1", "app"])).toBe("app");
    expect(startNameOf(["start", "--boot-timeout", "5", "--pull", "never", "--capture", "x.pcap", "app"])).toBe("app");
    expect(startNameOf(["start", "--engine-url=http://127.0.0.1:1", "app"])).toBe("app");
  });

  it("names none for another command, several names, no name, an invalid name, help or version", () => {
    expect(startNameOf(["stop", "app"])).toBeUndefined();
    expect(startNameOf(["list", "start"])).toBeUndefined();
    expect(startNameOf(["start"])).toBeUndefined();
    expect(startNameOf(["start", "a", "b"])).toBeUndefined();
    expect(startNameOf(["start", "a", "--", "b"])).toBeUndefined();
    expect(startNameOf(["start", "Bad_Name"])).toBeUndefined();
    expect(startNameOf(["start", "../x"])).toBeUndefined();
    expect(startNameOf(["start", "--help", "app"])).toBeUndefined();
    expect(startNameOf(["start", "app", "-h"])).toBeUndefined();
    expect(startNameOf(["start", "--engine-url", "app"])).toBeUndefined();
  });

  it("knows every option of start and of the program that takes a value (else its value would pass for a name)", () => {
    const program = buildProgram();
    const start = program.commands.find((c) => c.name() === "start")!;
    const takesValue = (o: Option) => o.required || o.optional;
    const valueOptions = [...start.options, ...program.options].filter(takesValue).map((o) => o.long);
    expect([...valueOptions].sort()).toEqual([...START_VALUE_OPTIONS].sort());
    // Flags without a value: the only global one is skipped before the command.
    expect(program.options.filter((o) => !takesValue(o)).map((o) => o.long)).toEqual(expect.arrayContaining(["--debug"]));
  });
});
