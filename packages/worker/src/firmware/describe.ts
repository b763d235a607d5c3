import { existsSync } from "node:fs";
import { join } from "node:path";
import { isIiiError } from "../errors.js";
import { kernelCacheDir } from "./kernel.js";
import { FirmwareResolver, type FirmwareCandidate, type FirmwareResolverOptions, type FirmwareSource } from "./resolver.js";

export interface FirmwareDescription {
  ok: boolean;
  /** One paragraph for `doctor`: the winner, then one line per source with why it did or did not win. */
  detail: string;
  /** The source a start would use (download counts when it is allowed and nothing local exists). */
  source?: FirmwareSource;
  path?: string;
  sha256?: string;
  /** The cached PVH kernel, when it already exists. */
  kernelElf?: string;
  candidates: FirmwareCandidate[];
}

/** What firmware a `start` would use, without downloading or extracting anything. */
export async function describeFirmware(
  env: NodeJS.ProcessEnv = process.env,
  options: Omit<FirmwareResolverOptions, "env"> = {},
): Promise<FirmwareDescription> {
  let resolver: FirmwareResolver;
  let result: Awaited<ReturnType<FirmwareResolver["inspect"]>>;
  try {
    resolver = new FirmwareResolver({ ...options, env });
    result = await resolver.inspect();
  } catch (error) {
    return { ok: false, detail: isIiiError(error) ? error.message : String(error), candidates: [] };
  }
  const { candidates } = result;
  const lines = candidates.map((c) => `  ${c.source.padEnd(8)} ${c.status.padEnd(9)} ${[c.path ?? c.location, c.reason].filter(Boolean).join(": ")}`);
  // The first source that is not simply absent decides, exactly as resolve() would.
  const decisive = candidates.find(
    (c) => c.status === "found" || c.status === "mismatch" || c.status === "unreadable" || c.status === "available" || (c.source === "env" && env.III_LIBKRUNFW_PATH),
  );
  const version = resolver.manifest.version;
  if (decisive?.status === "found") {
    const elf = join(kernelCacheDir(env), `${decisive.sha256}.elf`);
    const kernelElf = existsSync(elf) ? elf : undefined;
    return {
      ok: true,
      source: decisive.source,
      path: decisive.path,
      sha256: decisive.sha256,
      kernelElf,
      candidates,
      detail: [`libkrunfw ${version} from ${decisive.source} (${decisive.path})${kernelElf ? `, kernel cached at ${kernelElf}` : ", kernel not extracted yet"}`, ...lines].join("\n"),
    };
  }
  if (decisive?.status === "available") {
    return {
      ok: true,
      source: "download",
      candidates,
      detail: [`libkrunfw ${version} not installed; the first start downloads it from ${decisive.location}`, ...lines].join("\n"),
    };
  }
  const why =
    decisive?.status === "mismatch"
      ? `libkrunfw at ${decisive.path} has sha256 ${decisive.sha256}, expected ${resolver.manifest.platforms[resolver.platform]?.sha256}`
      : decisive
        ? `${decisive.path ?? decisive.location}: ${decisive.reason}`
        : `libkrunfw ${version} not found and downloads are disabled`;
  return { ok: false, candidates, detail: [why, ...lines].join("\n") };
}
