// A WASM worker written in JavaScript, componentized by jco into a WebAssembly component implementing the
// iii:worker/wasm-worker world (packages/worker/wit/iii-worker.wit). The iii-worker runner registers the
// functions it lists with the engine and invokes them here.
export const handler = {
  functions() {
    return ["wasm::greet"];
  },
  invoke(functionId, payload) {
    if (functionId !== "wasm::greet") throw `unknown function ${functionId}`;
    const input = JSON.parse(payload || "{}");
    const name = typeof input?.name === "string" && input.name !== "" ? input.name : "world";
    return JSON.stringify({ message: `Hello, ${name}!`, from: "wasm-worker" });
  },
};
