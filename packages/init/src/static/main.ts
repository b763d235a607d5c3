// Entry of the guest init, dist/init.krun (QuickJS). `--help` (not as PID 1), `--version`, `--golden <frames.json> <env.json>`
// (the guest half of the golden-file tests), else PID 1.
import * as os from "os";
import * as std from "std";
import { goldenReport } from "./golden.js";
import { INIT_VERSION, runInit } from "./init.js";

declare const scriptArgs: string[];

const args = scriptArgs.slice(1);
if ((args[0] === "--help" || args[0] === "-h") && os.getpid() !== 1) {
  // Only outside PID 1: the kernel hands init unknown cmdline words as arguments, and those are not ours to act on.
  std.out.puts(
    "usage: init.krun               (as PID 1 of an iii worker VM; configured by the III_* guest contract)\n" +
      "       init.krun --version\n" +
      "       init.krun --golden <frames.json> <env-contract.json>   (the golden-file contract, for tests)\n" +
      "Outside a VM it runs in a PID namespace or with III_INIT_NO_REBOOT=1; see the @iii/init README.\n",
  );
  std.exit(0);
} else if (args[0] === "--version") {
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
