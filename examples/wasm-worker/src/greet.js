// A WASM worker written in JavaScript, componentized by jco into a WebAssembly component implementing the
// iii:worker/wasm-worker world (packages/worker/wit/iii-worker.wit). The iii-worker runner registers the
// functions it lists with the engine and invokes them here; `trigger` calls other functions through the engine.
import { trigger } from "iii:worker/engine@0.1.0";

export const handler = {
  functions() {
    return ["wasm::greet", "wasm::functions"];
  },
  invoke(functionId, payload) {
    const input = JSON.parse(payload || "null");
    if (functionId === "wasm::greet") {
      const name = typeof input?.name === "string" && input.name !== "" ? input.name : "world";
      return JSON.stringify({ message: `Hello, ${name}!`, from: "wasm-worker" });
    }
    if (functionId === "wasm::functions") {
      // the engine's own function list, fetched through the engine import
      const listed = JSON.parse(trigger("engine::functions::list", "{}"));
      return JSON.stringify({ functions: listed.functions.map((f) => f.function_id).sort() });
    }
    throw `unknown function ${functionId}`;
  },
};
