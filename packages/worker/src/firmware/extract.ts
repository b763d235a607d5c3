import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { IiiError } from "../errors.js";

export interface RawKernelInfo {
  /** `krunfw_get_version()`: the ABI major (5 for libkrunfw 5.x). */
  abiVersion: number;
  loadAddr: bigint;
  /** libkrun's 64-bit entry (long mode); QEMU's PVH boot uses the Xen note instead. */
  entryAddr: bigint;
  sizeBytes: number;
}

/*
 * Runs in a child Node process: dlopen of an arbitrary libkrunfw (a user-supplied III_LIBKRUNFW_PATH may be
 * anything) can crash or abort the process that loads it, and a crash there must not take the CLI or the
 * supervisor down. The child writes the raw image to a file and reports the addresses as JSON.
 */
const CHILD_SCRIPT = String.raw`
const [koffiPath, libPath, outPath] = process.argv.slice(1);
const koffi = require(koffiPath);
const fs = require("node:fs");
const lib = koffi.load(libPath);
const getKernel = lib.func("void *krunfw_get_kernel(_Out_ size_t *load, _Out_ size_t *entry, _Out_ size_t *size)");
const getVersion = lib.func("int krunfw_get_version()");
const load = [0], entry = [0], size = [0];
const ptr = getKernel(load, entry, size);
if (!ptr) throw new Error("krunfw_get_kernel returned NULL");
const n = Number(size[0]);
if (!Number.isSafeInteger(n) || n <= 0 || n > 1 << 30) throw new Error("implausible kernel size " + size[0]);
fs.writeFileSync(outPath, new Uint8Array(koffi.view(ptr, n)), { mode: 0o600 });
process.stdout.write(JSON.stringify({ abi: getVersion(), load: String(load[0]), entry: String(entry[0]), size: n }));
`;

let koffiPath: string | undefined;

function resolveKoffi(): string {
  koffiPath ??= createRequire(import.meta.url).resolve("koffi");
  return koffiPath;
}

/** Loads `libPath` with koffi in a child process and writes the flat kernel image to `outPath`. */
export async function extractKernelImage(libPath: string, outPath: string, timeoutMs = 60_000): Promise<RawKernelInfo> {
  const args = ["-e", CHILD_SCRIPT, resolveKoffi(), libPath, outPath];
  const { stdout } = await new Promise<{ stdout: string }>((resolvePromise, reject) => {
    execFile(
      process.execPath,
      args,
      { encoding: "utf8", timeout: timeoutMs, maxBuffer: 1 << 20, env: { PATH: process.env.PATH ?? "" } },
      (error, stdout, stderr) => {
        if (error) {
          const why = error.signal ? `killed by ${error.signal}` : (stderr.trim().split("\n").filter(Boolean).at(-1) ?? error.message);
          reject(new IiiError("FirmwareCorrupt", `cannot read the kernel from ${libPath} (krunfw_get_kernel): ${why}`, { cause: error }));
        } else {
          resolvePromise({ stdout });
        }
      },
    );
  });
  const parsed = JSON.parse(stdout) as { abi: number; load: string; entry: string; size: number };
  return { abiVersion: parsed.abi, loadAddr: BigInt(parsed.load), entryAddr: BigInt(parsed.entry), sizeBytes: parsed.size };
}
