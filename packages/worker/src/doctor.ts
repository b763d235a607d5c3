import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setattrShimPath } from "@iii/filesystem/client";
import { execFileSync, spawnSync } from "node:child_process";
import { confinementArgs, probeDropSyntax, QEMU_UID_COUNT, qemuUidBase, type QemuConfinement } from "./vmm/qemu-confine.js";
import { chooseAccel, probeAccelFacts, type AccelChoice, type AccelFacts } from "./vmm/accel.js";
import { findGuestInit, GUEST_INIT_BUDGET_BYTES } from "./launch/guest-init.js";
import { findQemu, findVirtiofsd } from "./host/binaries.js";
import { leaseQemuUid, type QemuUidLease } from "./host/qemu-uid-lease.js";
import { versionLine, which } from "./host/which.js";
import { iiiHome } from "./paths.js";
import { canReadWrite, writableDirError } from "./host/writable.js";
import { describeFirmware } from "./firmware/describe.js";
import { describeWasmTier } from "./wasm/doctor.js";

export type Verdict = "ok" | "warn" | "fail";

export interface DoctorCheck {
  name: string;
  verdict: Verdict;
  detail: string;
  /** A failing required check means no VM can run here. */
  required: boolean;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  accel: "kvm" | "tcg";
  canRunVm: boolean;
  /** The WASM tier (node:wasi for preview 1, jco + preview2-shim for preview 2) needs no virtualisation. */
  canRunWasm: boolean;
}

function check(name: string, required: boolean, verdict: Verdict, detail: string): DoctorCheck {
  return { name, required, verdict, detail };
}

function libfuse2Present(): string | undefined {
  for (const path of ["/lib/x86_64-linux-gnu/libfuse.so.2", "/usr/lib/x86_64-linux-gnu/libfuse.so.2", "/usr/lib64/libfuse.so.2", "/usr/lib/libfuse.so.2", "/lib/aarch64-linux-gnu/libfuse.so.2"]) {
    if (existsSync(path)) return path;
  }
  try {
    const out = execFileSync("ldconfig", ["-p"], { encoding: "utf8", timeout: 5_000 });
    return /libfuse\.so\.2 .*=> (\S+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}


/**
 * III_ACCEL overrides the detection, but doctor still says when the override cannot work: `kvm` where the
 * detection found no KVM that boots guests (no vmx/svm, or the paravirtual kvm_pvm that fails on ordinary
 * kernels, or a /dev/kvm that does not open) fails, as does a value that is neither kvm nor tcg.
 */
function accelCheck(facts: AccelFacts, choice: AccelChoice): DoctorCheck {
  if (facts.override === undefined) return check("accel", true, "ok", `${choice.accel}: ${choice.reason}`);
  const detected = chooseAccel({ ...facts, override: undefined });
  if (facts.override !== "kvm" && facts.override !== "tcg") {
    return check("accel", true, "fail", `III_ACCEL=${facts.override} is neither kvm nor tcg (detection: ${detected.accel}: ${detected.reason})`);
  }
  if (facts.override === "kvm" && detected.accel !== "kvm") {
    return check("accel", true, "fail", `III_ACCEL=kvm but KVM cannot boot guests here: ${detected.reason}; unset it or use III_ACCEL=tcg`);
  }
  return check("accel", true, "ok", `${choice.accel}: ${choice.reason} (detection: ${detected.accel})`);
}

/**
 * The guest's PID 1 exactly as `start` would find it (III_INIT_PATH, else @iii/init's build): missing, not an
 * x86-64 ELF or dynamically linked fails (start refuses it too); over the 5 MB budget warns (every boot reads it
 * through the FUSE view and virtio-fs).
 */
function guestInitCheck(env: NodeJS.ProcessEnv): DoctorCheck {
  try {
    const { init } = findGuestInit(env);
    const bytes = statSync(init).size;
    const size = `${(bytes / 1024 / 1024).toFixed(2)} MB`;
    if (bytes > GUEST_INIT_BUDGET_BYTES) return check("guest init", true, "warn", `${init} (static ELF, ${size}: over the 5 MB budget)`);
    return check("guest init", true, "ok", `${init} (static ELF, ${size})`);
  } catch (error) {
    return check("guest init", true, "fail", (error as Error).message);
  }
}

/**
 * Whether QEMU starts confined as a worker's would (seccomp; as root also its own uid in an empty chroot, in the
 * spelling this QEMU takes): a QEMU built without seccomp exits at once, and then no VM starts.
 */
async function confinementCheck(qemu: string, env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  if (env.III_QEMU_CONFINE === "0") return check("qemu confinement", false, "warn", "off (III_QEMU_CONFINE=0): QEMU runs unconfined, with this process's privileges");
  const root = process.geteuid?.() === 0;
  const dir = root ? mkdtempSync(join(tmpdir(), "iii-doctor-qemu-")) : undefined;
  let lease: QemuUidLease | undefined;
  try {
    let confine: QemuConfinement = { seccomp: true };
    if (dir) {
      lease = await leaseQemuUid(qemuUidBase(env), QEMU_UID_COUNT);
      confine = { seccomp: true, user: { uid: lease.uid, gid: lease.uid }, chrootDir: dir };
    }
    // Still running after the timeout: it took the confinement (spawnSync then kills it).
    const syntax = dir ? await probeDropSyntax(qemu) : undefined;
    const r = spawnSync(qemu, ["-M", "none", "-nodefaults", "-display", "none", "-S", ...confinementArgs(confine, syntax)], { timeout: 600, killSignal: "SIGKILL", encoding: "utf8" });
    if (r.status !== null && r.signal === null) {
      const why = r.stderr.trim().split("\n")[0] ?? `exit ${r.status}`;
      return check("qemu confinement", true, "fail", `QEMU does not start confined: ${why} (III_QEMU_CONFINE=0 runs it unconfined)`);
    }
    return check("qemu confinement", true, "ok", root ? "seccomp, own uid/gid (leased from III_QEMU_UID_BASE), empty chroot" : "seccomp (not root: no uid drop or chroot)");
  } catch (error) {
    return check("qemu confinement", true, "fail", (error as Error).message);
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await lease?.release();
  }
}

export async function runDoctor(env: NodeJS.ProcessEnv = process.env): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const facts = probeAccelFacts(env);
  const choice = chooseAccel(facts);
  const virt = facts.hardwareVirtualization
    ? `hardware virtualisation (${facts.hardwareVirtualization})`
    : facts.paravirtualKvm
      ? "paravirtual nested KVM (kvm_pvm), no vmx/svm"
      : "no hardware virtualisation";
  checks.push(check("virtualisation", false, facts.hardwareVirtualization ? "ok" : "warn", virt));
  checks.push(accelCheck(facts, choice));

  const qemu = findQemu(env);
  const qemuVersion = qemu ? versionLine(qemu) : undefined;
  checks.push(
    qemu && qemuVersion
      ? check("qemu", true, "ok", `${qemu} (${qemuVersion})`)
      : check("qemu", true, "fail", qemu ? `${qemu} does not run` : "qemu-system-x86_64 not found (apt install qemu-system-x86)"),
  );
  if (qemu && qemuVersion) checks.push(await confinementCheck(qemu, env));
  const virtiofsd = findVirtiofsd(env);
  const virtiofsdVersion = virtiofsd ? versionLine(virtiofsd) : undefined;
  checks.push(
    virtiofsd
      ? check("virtiofsd", true, "ok", `${virtiofsd}${virtiofsdVersion ? ` (${virtiofsdVersion})` : ""}`)
      : check("virtiofsd", true, "fail", "virtiofsd not found (apt install qemu-system-common)"),
  );
  const devFuseError = existsSync("/dev/fuse") ? canReadWrite("/dev/fuse") : "missing";
  checks.push(check("/dev/fuse", true, devFuseError ? "fail" : "ok", devFuseError ? `/dev/fuse: ${devFuseError}` : "/dev/fuse usable"));
  const libfuse = libfuse2Present();
  checks.push(check("libfuse2", true, libfuse ? "ok" : "fail", libfuse ?? "libfuse.so.2 not found (apt install libfuse2)"));
  // The FUSE server's preloaded shim keeps the root's --disk bound: without it no VM starts (DiskLimitUnsupported).
  const shim = setattrShimPath();
  checks.push(
    check(
      "filesystem shim",
      true,
      shim ? "ok" : "fail",
      shim ?? "@iii/filesystem's libiii-setattr-shim.so was not built (it needs a C compiler when the package is installed: apt install gcc, then reinstall); without it a VM cannot keep its --disk bound and does not start",
    ),
  );
  const fusermount = which("fusermount", ["/usr/bin", "/bin"], env) ?? which("fusermount3", ["/usr/bin", "/bin"], env);
  checks.push(check("fusermount", true, fusermount ? "ok" : "fail", fusermount ?? "fusermount not found (apt install fuse3)"));
  const tunError = existsSync("/dev/net/tun") ? canReadWrite("/dev/net/tun") : "missing";
  checks.push(check("/dev/net/tun", false, tunError ? "warn" : "ok", tunError ? `/dev/net/tun: ${tunError} (network tests need it)` : "/dev/net/tun usable"));

  const firmware = await describeFirmware(env);
  checks.push(check("firmware", true, firmware.ok ? "ok" : "fail", firmware.detail));

  checks.push(guestInitCheck(env));

  const home = iiiHome(env);
  const homeError = writableDirError(home);
  checks.push(check("III_HOME", true, homeError ? "fail" : "ok", homeError ? `${home}: ${homeError}` : `${home} writable`));

  const canRunVm = checks.every((c) => !c.required || c.verdict !== "fail");
  const wasm = describeWasmTier();
  checks.push(check("wasm", false, wasm.ok ? "ok" : "warn", wasm.detail));
  return { checks, accel: choice.accel, canRunVm, canRunWasm: wasm.ok && !homeError };
}
