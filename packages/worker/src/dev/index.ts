export { DevProjectError, type DevProjectProblem } from "./errors.js";
export {
  MANIFEST_FILE,
  parseDevManifest,
  type DevLanguage,
  type DevManifest,
  type DevPackageManager,
  type DevResources,
  type NodePackageManager,
} from "./manifest.js";
export {
  detectProject,
  INSTALL_INPUTS,
  NODE_LOCKFILES,
  VENV_DIR,
  type DevProject,
  type DevScripts,
} from "./project.js";
export { moduleNameFor, parsePyproject, type PyprojectInfo } from "./pyproject.js";
export {
  DEV_CACHE_DIR,
  devScript,
  GUEST_WORKSPACE,
  INSTALL_MARKER,
  INSTALLING_FLAG,
  installKey,
  installState,
  type InstallState,
  readInstallMarker,
  RESERVED_ENV,
  type DevScriptOptions,
} from "./script.js";
export { shellQuote } from "./shell.js";
export {
  classifyChange,
  IGNORED_DIRS,
  watchProject,
  WATCH_MAX_DIRECTORIES,
  type ChangeKind,
  type ProjectWatcher,
  type WatchProjectOptions,
} from "./watch.js";
