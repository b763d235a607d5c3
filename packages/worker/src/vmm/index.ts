export { chooseAccel, probeAccelFacts, type Accel, type AccelChoice, type AccelFacts } from "./accel.js";
export type { Vmm, VmConfig, VmShare, VmNetwork, VmControlPort, VmProcess, VmExit } from "./types.js";
export { QemuVmm, isListening, type QemuVmmOptions, type QemuVmmTimings } from "./qemu-vmm.js";
export {
  buildKernelCmdline,
  buildQemuArgv,
  buildVirtiofsdCommand,
  CONTROL_PORT_NAME,
  TCG_BOOT_TUNING,
  TCG_BOOT_TUNING_SMP,
  MAX_CMDLINE_ENV,
  MAX_VIRTIOFS_TAG_BYTES,
  type KernelCmdlineSpec,
  type QemuArgvSpec,
  type VirtiofsdArgvSpec,
} from "./qemu-argv.js";
export { QmpClient, shutdownReason, type QmpEvent } from "./qmp.js";
export { hostTscKhz } from "./host-clock.js";
export { consoleTail, readTail, waitForLine } from "./console-log.js";
