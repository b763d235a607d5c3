export { chooseAccel, probeAccelFacts, resolveAccel, type Accel, type AccelChoice, type AccelFacts } from "./accel.js";
export type { Vmm, VmmFactory, VmmOptions, VmConfig, VmShare, VmNetwork, VmControlPort, VmProcess, VmExit } from "./types.js";
export { QemuVmm, createQemuVmm, isListening, type QemuVmmOptions, type QemuVmmTimings } from "./qemu-vmm.js";
export {
  buildKernelCmdline,
  buildQemuArgv,
  buildVirtiofsdCommand,
  buildVmCommands,
  TCG_BOOT_TUNING,
  TCG_BOOT_TUNING_SMP,
  MAX_CMDLINE_ENV,
  MAX_VIRTIOFS_TAG_BYTES,
  type KernelCmdlineSpec,
  type QemuArgvSpec,
  type VirtiofsdArgvSpec,
} from "./qemu-argv.js";
/** The virtio-serial port name of init's control channel: @iii/init owns it. */
export { CONTROL_PORT_NAME } from "@iii/init";
export { QmpClient, shutdownReason, type QmpEvent } from "./qmp.js";
export { hostTscKhz } from "./host-clock.js";
export { consoleTail, readTail, waitForLine } from "./console-log.js";
