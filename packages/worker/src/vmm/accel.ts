import { closeSync, existsSync, openSync, readFileSync } from "node:fs";

export type Accel = "kvm" | "tcg";

export interface AccelFacts {
  /** `vmx` or `svm` among the CPU flags. */
  hardwareVirtualization: "vmx" | "svm" | undefined;
  /** `/sys/module/kvm_pvm` exists: a paravirtual nested KVM that fails on ordinary guest kernels. */
  paravirtualKvm: boolean;
  /** `/dev/kvm` opened read-write. */
  devKvmOpens: boolean;
  devKvmError?: string;
  /** `III_ACCEL`, if set. */
  override?: string;
}

export interface AccelChoice {
  accel: Accel;
  reason: string;
}

/**
 * KVM only with real hardware virtualisation and an openable /dev/kvm. A successful open alone is not
 * trusted: the paravirtual kvm_pvm module opens fine and then fails with "KVM internal error".
 */
export function chooseAccel(facts: AccelFacts): AccelChoice {
  if (facts.override === "kvm" || facts.override === "tcg") {
    return { accel: facts.override, reason: `III_ACCEL=${facts.override}` };
  }
  if (facts.hardwareVirtualization && facts.devKvmOpens) {
    return { accel: "kvm", reason: `CPU has ${facts.hardwareVirtualization} and /dev/kvm opens` };
  }
  if (facts.hardwareVirtualization) {
    return { accel: "tcg", reason: `CPU has ${facts.hardwareVirtualization} but /dev/kvm: ${facts.devKvmError ?? "unavailable"}` };
  }
  if (facts.paravirtualKvm) {
    return { accel: "tcg", reason: "paravirtual nested KVM (kvm_pvm) without vmx/svm cannot boot guest kernels; using TCG emulation" };
  }
  return { accel: "tcg", reason: "no vmx/svm CPU flag; using TCG emulation" };
}

export function probeAccelFacts(env: NodeJS.ProcessEnv = process.env): AccelFacts {
  let flags = "";
  try {
    const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
    flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? "";
  } catch {
    // not Linux; no flags
  }
  const words = new Set(flags.trim().split(/\s+/));
  const facts: AccelFacts = {
    hardwareVirtualization: words.has("vmx") ? "vmx" : words.has("svm") ? "svm" : undefined,
    paravirtualKvm: existsSync("/sys/module/kvm_pvm"),
    devKvmOpens: false,
  };
  try {
    closeSync(openSync("/dev/kvm", "r+"));
    facts.devKvmOpens = true;
  } catch (error) {
    facts.devKvmError = (error as Error).message;
  }
  if (env.III_ACCEL) facts.override = env.III_ACCEL;
  return facts;
}

/** The accel for this host, probed once: with an III_ACCEL override, the reason keeps what the probe says (why a forced KVM fails). */
export function resolveAccel(env: NodeJS.ProcessEnv = process.env): AccelChoice {
  const facts = probeAccelFacts(env);
  const choice = chooseAccel(facts);
  if (facts.override) choice.reason += `; host probe: ${chooseAccel({ ...facts, override: undefined }).reason}`;
  return choice;
}
