import { setFlagsFromString } from "node:v8";

/**
 * V8 settings for the duration of a pull + unpack, which is native work (sockets, SHA-256, zlib, write(2)) driven
 * by plain JS: measured on the images bench (peak RSS / time of one pull):
 * - `--no-turbofan --no-maglev`: the optimizing compilers, once they run, fault ~10 MB of their own machine code
 *   (node's text pages) and compile zones into RSS; without them 77 → 68 MB, ~1.2x the time (still ~half of
 *   skopeo + umoci).
 * - `--semi-space-growth-factor=1`: the young generation stays at its initial size instead of doubling up to
 *   16 MiB per semi-space under the tar reader's garbage; 68 → 63 MB, no measurable time.
 * - `--optimize-for-size`: V8's heap heuristics favour memory (smaller growing steps, earlier GC); 63 → 60.5 MB,
 *   no measurable time.
 * The supervisor's boot runs under them too, until READY (supervisor.ts): its hot code comes later, in the network
 * stack, and an idle worker's supervisor then never faults the compilers in (bench:density --versus: 6 MiB of RSS,
 * 3 of PSS less per worker; bench:boot --versus: per-round median +92 and +6 ms in two 9-round runs, noise).
 * All are read by V8 when it decides (tier-up, new-space growth, heap limits), so they take effect at run time; the maximum
 * semi-space size and --lite-mode (which would go further) only work as startup flags. The previous values come
 * back when the last pull in the process ends, and a flag the user set (NODE_OPTIONS, node's own arguments) is
 * left alone.
 */
const LEAN: { name: string; lean: string; normal: string }[] = [
  { name: "turbofan", lean: "--no-turbofan", normal: "--turbofan" },
  { name: "opt", lean: "--no-opt", normal: "--opt" },
  { name: "maglev", lean: "--no-maglev", normal: "--maglev" },
  { name: "semi-space-growth-factor", lean: "--semi-space-growth-factor=1", normal: "--semi-space-growth-factor=2" },
  { name: "optimize-for-size", lean: "--optimize-for-size", normal: "--no-optimize-for-size" },
];

/** Startup flags under which the compilers this file toggles are off for good. */
const NO_JIT = ["jitless", "lite-mode"];

let holders = 0;
let applied: typeof LEAN = [];

/** Flag names the process was started with (node's arguments and NODE_OPTIONS), `_` spelled `-`, `no-` dropped. */
function userFlags(): Set<string> {
  const args = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)];
  const names = new Set<string>();
  for (const arg of args) {
    const match = /^--(?:no-)?([\w-]+)/.exec(arg);
    if (match) names.add(match[1]!.replace(/_/g, "-"));
  }
  return names;
}

/** Applies the lean settings until the returned function is called (nested and concurrent pulls share them). */
export function leanVm(): () => void {
  if (holders++ === 0) {
    const user = userFlags();
    // turbofan and opt are one flag: leave both if the user set either
    const skip = user.has("turbofan") || user.has("opt") ? new Set([...user, "turbofan", "opt"]) : user;
    // A process started without a JIT (or in lite mode) has the compilers off already, and turning them "back on"
    // afterwards would crash V8 (a SIGSEGV at the next hot function, seen with --jitless): then change nothing.
    applied = NO_JIT.some((name) => user.has(name)) ? [] : LEAN.filter((flag) => !skip.has(flag.name));
    for (const flag of applied) setFlagsFromString(flag.lean);
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders === 0) for (const flag of applied) setFlagsFromString(flag.normal);
  };
}
