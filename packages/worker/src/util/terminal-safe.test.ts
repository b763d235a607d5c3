import { describe, expect, it } from "vitest";
import { terminalJson, terminalSafe, terminalSafeLine } from "./terminal-safe.js";

const ATTACK = "\x1b]52;c;Y3VybCBldmlsIHwgc2gK\x07\x1b]0;iii: all good\x07\x1b[2K\r\x9b31m/app/server\x7f";
const SHOWN = "\\x1b]52;c;Y3VybCBldmlsIHwgc2gK\\x07\\x1b]0;iii: all good\\x07\\x1b[2K\\x0d\\x9b31m/app/server\\x7f";

describe("terminal-safe text", () => {
  it("shows ESC, BEL, CR, C1 and DEL as \\xNN and keeps everything else", () => {
    expect(terminalSafe(ATTACK)).toBe(SHOWN);
    expect(terminalSafeLine(ATTACK)).toBe(SHOWN);
    expect(terminalSafe("plain ascii, ünïcödé, 日本, emoji 🙂")).toBe("plain ascii, ünïcödé, 日本, emoji 🙂");
    // U+00A0 and above are printable: only U+0080-U+009F are C1 controls
    expect(terminalSafe("\u00a0\u00ff")).toBe("\u00a0\u00ff");
    expect(terminalSafe("\u0000\u0008\u000b\u000c\u001f")).toBe("\\x00\\x08\\x0b\\x0c\\x1f");
  });

  it("multi-line text keeps \\n and \\t; one line shows them too", () => {
    expect(terminalSafe("a\tb\nc\rd")).toBe("a\tb\nc\\x0dd");
    expect(terminalSafeLine("a\tb\nc\rd")).toBe("a\\x09b\\x0ac\\x0dd");
  });

  it("terminalJson is the same JSON value with DEL and C1 escaped as \\u00NN, C0 as JSON.stringify escapes it", () => {
    const value = { reason: ATTACK, list: ["\x9b", "\u0085"], n: 1 };
    const text = terminalJson(value, 2);
    expect(JSON.parse(text)).toEqual(value);
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    expect(text).toContain("\\u001b]52;c;");
    expect(text).toContain("\\u009b31m");
    expect(text).toContain("\\u007f");
    expect(terminalJson({ a: "x" })).toBe(JSON.stringify({ a: "x" }));
    expect(terminalJson(undefined)).toBe("null");
  });
});
