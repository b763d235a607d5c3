import { describe, expect, it } from "vitest";
import { parseWorkerMessage, ProtocolError } from "./protocol.js";

describe("parseWorkerMessage", () => {
  it("parses the frames the iii-sdk sends", () => {
    expect(parseWorkerMessage('{"type":"registerfunction","id":"a::b","description":"d"}')).toEqual({
      type: "registerfunction",
      id: "a::b",
      description: "d",
    });
    expect(parseWorkerMessage('{"type":"invokefunction","function_id":"x","data":{},"action":{"type":"void"}}')).toMatchObject({
      type: "invokefunction",
      function_id: "x",
    });
    expect(parseWorkerMessage('{"type":"invocationresult","invocation_id":"i","result":1}')).toMatchObject({ result: 1 });
  });

  it("returns null for a message type it does not know", () => {
    expect(parseWorkerMessage('{"type":"somethingnew","x":1}')).toBeNull();
  });

  it("names what is wrong with a malformed frame", () => {
    expect(() => parseWorkerMessage("not json")).toThrow(ProtocolError);
    expect(() => parseWorkerMessage("[1]")).toThrow("not a JSON object");
    expect(() => parseWorkerMessage('{"id":"x"}')).toThrow('no string "type"');
    expect(() => parseWorkerMessage('{"type":"registerfunction"}')).toThrow('registerfunction frame has no string "id"');
    expect(() => parseWorkerMessage('{"type":"invokefunction","function_id":"f","invocation_id":5}')).toThrow(
      '"invocation_id"',
    );
  });
});
