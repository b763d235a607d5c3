import { describe, expect, it } from "vitest";
import { LineStamper } from "../src/cli/commands/logs-run.js";

describe("logs -f --timestamps", () => {
  it("a UTF-8 character split across two chunks prints whole, and each line gets one stamp", () => {
    const stamper = new LineStamper();
    const bytes = Buffer.from("café au lait\nnext\n");
    const at = bytes.indexOf(0xa9); // second byte of é
    const out = stamper.apply(bytes.subarray(0, at), 0) + stamper.apply(bytes.subarray(at), 1000);
    expect(out).toBe("1970-01-01T00:00:00.000Z café au lait\n1970-01-01T00:00:01.000Z next\n");
  });
});
