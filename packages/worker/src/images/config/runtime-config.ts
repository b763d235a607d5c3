import { parsePasswd, type PasswdEntry } from "@iii/init";
import { createRequire } from "node:module";
import { IiiError } from "../../errors.js";
import { readFileInRoot } from "./read-in-root.js";

/** yaml costs ~11 MB of RSS to load; only an image that has /iii/worker.yaml pays for it. */
function loadYaml(): typeof import("yaml") {
  return createRequire(import.meta.url)("yaml") as typeof import("yaml");
}

export interface ImageUser {
  /** The `User` string of the image config ("" = root). */
  spec: string;
  uid: number;
  gid: number;
  /** Supplementary groups from the image's /etc/group. */
  additionalGids: number[];
  /** Home directory from /etc/passwd, when the user has an entry. */
  home?: string;
  name?: string;
}

export interface ExposedPort {
  port: number;
  protocol: "tcp" | "udp" | "sctp";
}

/** What a worker needs from the image config to start its workload. */
export interface ImageRuntimeConfig {
  entrypoint: string[];
  cmd: string[];
  /** Image `Env`, in order (split at the first `=`). Worker env wins: see mergeEnv. */
  env: Record<string, string>;
  /** Absolute; "/" when the image sets none. */
  workingDir: string;
  user: ImageUser;
  /** Informational: nothing is published unless the worker asks. */
  exposedPorts: ExposedPort[];
  stopSignal?: string;
  labels: Record<string, string>;
  os?: string;
  architecture?: string;
}

/** `/iii/worker.yaml` inside the image. */
export interface WorkerManifest {
  name?: string;
  version?: string;
  description?: string;
  resources?: { cpus?: string; memory?: string; disk?: string };
  /** Every field as written, for forward compatibility. */
  raw: Record<string, unknown>;
}

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function stringArray(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

/** The config fields that do not need the rootfs. Pure. */
export function parseImageConfig(raw: unknown): Omit<ImageRuntimeConfig, "user"> & { userSpec: string } {
  const top = raw !== null && typeof raw === "object" ? (raw as Record<string, unknown>) : {};
  const c = top.config !== null && typeof top.config === "object" ? (top.config as Record<string, unknown>) : {};
  const env: Record<string, string> = {};
  for (const entry of stringArray(c.Env)) {
    const eq = entry.indexOf("=");
    if (eq === 0) continue;
    if (eq < 0) env[entry] = "";
    else env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  if (env.PATH === undefined) env.PATH = DEFAULT_PATH;
  const exposedPorts: ExposedPort[] = [];
  if (c.ExposedPorts && typeof c.ExposedPorts === "object") {
    for (const key of Object.keys(c.ExposedPorts)) {
      const match = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i.exec(key);
      if (match) exposedPorts.push({ port: Number(match[1]), protocol: (match[2]?.toLowerCase() ?? "tcp") as ExposedPort["protocol"] });
    }
  }
  const workingDir = typeof c.WorkingDir === "string" && c.WorkingDir !== "" ? c.WorkingDir : "/";
  const labels: Record<string, string> = {};
  if (c.Labels && typeof c.Labels === "object") {
    for (const [k, v] of Object.entries(c.Labels)) if (typeof v === "string") labels[k] = v;
  }
  const config: Omit<ImageRuntimeConfig, "user"> & { userSpec: string } = {
    entrypoint: stringArray(c.Entrypoint),
    cmd: stringArray(c.Cmd),
    env,
    workingDir: workingDir.startsWith("/") ? workingDir : `/${workingDir}`,
    userSpec: typeof c.User === "string" ? c.User : "",
    exposedPorts,
    labels,
  };
  if (typeof c.StopSignal === "string" && c.StopSignal !== "") config.stopSignal = c.StopSignal;
  if (typeof top.os === "string") config.os = top.os;
  if (typeof top.architecture === "string") config.architecture = top.architecture;
  return config;
}

export function parseGroup(text: string): Array<{ name: string; gid: number; members: string[] }> {
  const groups = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 4 || !/^\d+$/.test(f[2]!)) continue;
    groups.push({ name: f[0]!, gid: Number(f[2]), members: f[3]!.split(",").filter(Boolean) });
  }
  return groups;
}

/**
 * Resolves `User` (`name`, `uid`, `name:group`, `uid:gid`, ...) the way runc does: names through the image's
 * /etc/passwd and /etc/group; a numeric uid without an entry runs with gid 0. Pure.
 */
export function resolveUser(spec: string, passwdText: string | undefined, groupText: string | undefined, image: string): ImageUser {
  const [userPart = "", groupPart] = spec.split(":", 2);
  const passwd = passwdText ? parsePasswd(passwdText) : [];
  const groups = groupText ? parseGroup(groupText) : [];
  let uid = 0;
  let gid = 0;
  let entry: PasswdEntry | undefined;
  if (userPart === "") {
    entry = passwd.find((p) => p.uid === 0);
  } else if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (!entry) {
      throw new IiiError("ImageInvalid", `image ${image}: User "${userPart}" is not in the image's /etc/passwd`);
    }
    uid = entry.uid;
  }
  if (entry) gid = entry.gid;
  if (groupPart !== undefined && groupPart !== "") {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const group = groups.find((g) => g.name === groupPart);
      if (!group) throw new IiiError("ImageInvalid", `image ${image}: group "${groupPart}" is not in the image's /etc/group`);
      gid = group.gid;
    }
  }
  const name = entry?.name;
  const additionalGids = name ? groups.filter((g) => g.members.includes(name) && g.gid !== gid).map((g) => g.gid) : [];
  const user: ImageUser = { spec, uid, gid, additionalGids };
  if (entry) {
    user.home = entry.home;
    user.name = entry.name;
  }
  return user;
}

export async function runtimeConfigFromRootfs(rawConfig: unknown, rootfs: string, image: string): Promise<ImageRuntimeConfig> {
  const { userSpec, ...rest } = parseImageConfig(rawConfig);
  const passwd = await readFileInRoot(rootfs, "/etc/passwd").catch(() => undefined);
  const group = await readFileInRoot(rootfs, "/etc/group").catch(() => undefined);
  const user = resolveUser(userSpec, passwd?.toString("utf8"), group?.toString("utf8"), image);
  if (rest.env.HOME === undefined && user.home) rest.env.HOME = user.home;
  return { ...rest, user };
}

export function parseWorkerManifest(text: string, image: string): WorkerManifest {
  let raw: unknown;
  try {
    raw = loadYaml().parse(text);
  } catch (error) {
    throw new IiiError("ImageInvalid", `image ${image}: /iii/worker.yaml is not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new IiiError("ImageInvalid", `image ${image}: /iii/worker.yaml must be a mapping`);
  }
  const record = raw as Record<string, unknown>;
  const manifest: WorkerManifest = { raw: record };
  for (const key of ["name", "version", "description"] as const) {
    const value = record[key];
    if (typeof value === "string" || typeof value === "number") manifest[key] = String(value);
  }
  if (record.resources && typeof record.resources === "object") {
    const r = record.resources as Record<string, unknown>;
    manifest.resources = {};
    if (typeof r.cpus === "string" || typeof r.cpus === "number") manifest.resources.cpus = String(r.cpus);
    if (typeof r.memory === "string" || typeof r.memory === "number") manifest.resources.memory = String(r.memory);
    if (typeof r.disk === "string" || typeof r.disk === "number") manifest.resources.disk = String(r.disk);
  }
  return manifest;
}

export async function readWorkerManifest(rootfs: string, image: string): Promise<WorkerManifest | undefined> {
  const bytes = await readFileInRoot(rootfs, "/iii/worker.yaml", 256 * 1024).catch(() => undefined);
  return bytes ? parseWorkerManifest(bytes.toString("utf8"), image) : undefined;
}

/**
 * The argv a worker runs: Entrypoint+Cmd, or the worker's own command, which replaces both (WorkerSpec.command
 * in the state file says so).
 */
export function workloadArgv(config: ImageRuntimeConfig, override?: string[]): string[] {
  return override && override.length > 0 ? [...override] : [...config.entrypoint, ...config.cmd];
}

/** Image env, then the worker's: the worker wins. */
export function mergeEnv(config: ImageRuntimeConfig, workerEnv: Record<string, string> = {}): Record<string, string> {
  return { ...config.env, ...workerEnv };
}
