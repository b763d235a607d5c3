// Assembles hello.wat into hello.wasm (or the path given) with wabt, a devDependency of @iii/worker.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "../../packages/worker/package.json"));
const wabt = await (await import(require.resolve("wabt"))).default();
const module = wabt.parseWat("hello.wat", readFileSync(join(here, "hello.wat"), "utf8"));
const out = process.argv[2] ?? join(here, "hello.wasm");
writeFileSync(out, module.toBinary({}).buffer);
module.destroy();
console.log(`wrote ${out}`);
