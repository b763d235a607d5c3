// Entry of the static init (QuickJS). `--version`, `--golden <frames.json> <env.json>`
// (the guest half of the golden-file tests), else PID 1.
import * as std from "std";
import { goldenReport } from "./golden.js";
import { INIT_VERSION, runInit } from "./init.js";

declare const scriptArgs: string[];

const args = scriptArgs.slice(1);
if (args[0] === "--version") {
  std.out.puts(`iii-init ${INIT_VERSION} (static, QuickJS)\n`);
  std.exit(0);
} else if (args[0] === "--golden") {
  const load = (p: string | undefined): string => {
    const t = p === undefined ? null : std.loadFile(p);
    if (t === null) throw new Error(`cannot read ${p}`);
    return t;
  };
  std.out.puts(`${JSON.stringify(goldenReport(load(args[1]), load(args[2])))}\n`);
  std.out.flush();
  std.exit(0);
} else {
  void runInit(std.getenviron());
}
