import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);

// ../worker/bench/net-vm/main.ts
import { execFileSync as execFileSync2, spawn as spawn2 } from "node:child_process";
import { once } from "node:events";
import { chmodSync, copyFileSync, cpSync, existsSync as existsSync4, mkdirSync as mkdirSync3, mkdtempSync, readFileSync as readFileSync6, rmSync, writeFileSync } from "node:fs";
import { dirname as dirname5, join as join8 } from "node:path";
import { fileURLToPath as fileURLToPath2 } from "node:url";
import { parseArgs } from "node:util";
import { NetworkStack } from "@iii/network";

// ../worker/src/host/mkdirs.ts
import { mkdirSync, statSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
function mkdirsSync(path, mode) {
  const missing = [];
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      if (statSync(dir).isDirectory()) break;
      mkdirSync(dir);
    } catch (error) {
      if (error.code !== "ENOENT" || dirname(dir) === dir) throw error;
    }
    missing.unshift(dir);
  }
  for (const dir of missing) {
    try {
      mkdirSync(dir, mode === void 0 ? void 0 : { mode });
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
    }
  }
}
async function mkdirs(path, mode) {
  const missing = [];
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      if ((await stat(dir)).isDirectory()) break;
      await mkdir(dir);
    } catch (error) {
      if (error.code !== "ENOENT" || dirname(dir) === dir) throw error;
    }
    missing.unshift(dir);
  }
  for (const dir of missing) {
    try {
      await mkdir(dir, mode === void 0 ? void 0 : { mode });
    } catch (error) {
      if (error.code !== "EEXIST") throw error;
    }
  }
}

// ../worker/src/firmware/kernel.ts
import { closeSync, openSync, readSync, statSync as statSync2 } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join as join2 } from "node:path";
import { randomBytes } from "node:crypto";

// ../worker/src/paths.ts
import { homedir } from "node:os";
import { join, resolve } from "node:path";
function iiiHome(env = process.env) {
  return env.III_HOME ? resolve(env.III_HOME) : join(homedir(), ".iii");
}

// ../worker/src/util/atomic-write.ts
import { createRequire } from "node:module";
var loaded;
var writer = () => loaded ??= createRequire(import.meta.url)("write-file-atomic");
async function writeFileAtomic(path, data, options = {}) {
  await writer()(path, typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), options);
}
function writeFileAtomicSync(path, data, options = {}) {
  writer().sync(path, typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength), options);
}

// ../worker/src/errors.ts
var ERROR_CODES = {
  UsageError: 2,
  InvalidReference: 1,
  InvalidWorkerName: 1,
  InvalidQuantity: 1,
  InvalidOption: 1,
  WorkerNotFound: 1,
  WorkerExists: 1,
  WorkerRunning: 1,
  RegistryLookupFailed: 1,
  StateFileCorrupt: 1,
  StateFileUnwritable: 1,
  StateLockTimeout: 1,
  HomeUnwritable: 1,
  KvmUnavailable: 1,
  QemuNotFound: 1,
  VirtiofsdNotFound: 1,
  FirmwareNotFound: 1,
  FirmwareCorrupt: 1,
  FirmwareDownloadFailed: 1,
  RootfsNotFound: 1,
  ImagePullFailed: 1,
  ImageInvalid: 1,
  LayerRejected: 1,
  VmBootFailed: 1,
  QmpFailed: 1,
  WorkloadStartFailed: 1,
  VmNotRunning: 1,
  ExecRejected: 1,
  NotImplemented: 1,
  NotApplicable: 1,
  WasmInvalid: 1,
  WasiConfigInvalid: 1,
  WasmStartFailed: 1,
  Internal: 70
};
var IiiError = class extends Error {
  code;
  constructor(code, message, options) {
    super(message, options);
    this.name = "IiiError";
    this.code = code;
  }
  get exitCode() {
    return isWorkerCode(this.code) ? ERROR_CODES[this.code] : 1;
  }
};
function isWorkerCode(code) {
  return Object.hasOwn(ERROR_CODES, code);
}
function errnoCode(error) {
  return typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : void 0;
}

// ../worker/src/firmware/extract.ts
import { execFile } from "node:child_process";
import { createRequire as createRequire2 } from "node:module";
var CHILD_SCRIPT = String.raw`
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
var koffiPath;
function resolveKoffi() {
  koffiPath ??= createRequire2(import.meta.url).resolve("koffi");
  return koffiPath;
}
async function extractKernelImage(libPath, outPath, timeoutMs = 6e4) {
  const args = ["-e", CHILD_SCRIPT, resolveKoffi(), libPath, outPath];
  const { stdout } = await new Promise((resolvePromise, reject) => {
    execFile(
      process.execPath,
      args,
      { encoding: "utf8", timeout: timeoutMs, maxBuffer: 1 << 20, env: { PATH: process.env.PATH ?? "" } },
      (error, stdout2, stderr) => {
        if (error) {
          const why = error.signal ? `killed by ${error.signal}` : stderr.trim().split("\n").filter(Boolean).at(-1) ?? error.message;
          reject(new IiiError("FirmwareCorrupt", `cannot read the kernel from ${libPath} (krunfw_get_kernel): ${why}`, { cause: error }));
        } else {
          resolvePromise({ stdout: stdout2 });
        }
      }
    );
  });
  const parsed = JSON.parse(stdout);
  return { abiVersion: parsed.abi, loadAddr: BigInt(parsed.load), entryAddr: BigInt(parsed.entry), sizeBytes: parsed.size };
}

// ../worker/src/firmware/pvh-elf.ts
var XEN_ELFNOTE_PHYS32_ENTRY = 18;
var ELF_HEADER_SIZE = 64;
var PROGRAM_HEADER_SIZE = 56;
var PT_LOAD = 1;
var PT_NOTE = 4;
var PF_X = 1;
var PF_W = 2;
var PF_R = 4;
var EM_X86_64 = 62;
var ET_EXEC = 2;
var KERNEL_FILE_OFFSET = 4096;
function buildPvhElfHeader(layout) {
  if (layout.pvhEntry > 0xffffffffn) throw new RangeError(`PVH entry ${layout.pvhEntry.toString(16)} does not fit 32 bits`);
  if (layout.loadAddr % 0x1000n !== 0n) throw new RangeError(`load address 0x${layout.loadAddr.toString(16)} is not page aligned`);
  const out = new Uint8Array(KERNEL_FILE_OFFSET);
  const view = new DataView(out.buffer);
  const phoff = ELF_HEADER_SIZE;
  const noteOffset = phoff + 2 * PROGRAM_HEADER_SIZE;
  const noteSize = 12 + 4 + 4;
  out.set([
    127,
    69,
    76,
    70,
    2,
    1,
    1,
    0
    /* SYSV */
  ], 0);
  view.setUint16(16, ET_EXEC, true);
  view.setUint16(18, EM_X86_64, true);
  view.setUint32(20, 1, true);
  view.setBigUint64(24, layout.pvhEntry, true);
  view.setBigUint64(32, BigInt(phoff), true);
  view.setBigUint64(40, 0n, true);
  view.setUint32(48, 0, true);
  view.setUint16(52, ELF_HEADER_SIZE, true);
  view.setUint16(54, PROGRAM_HEADER_SIZE, true);
  view.setUint16(56, 2, true);
  view.setUint16(58, 0, true);
  view.setUint16(60, 0, true);
  view.setUint16(62, 0, true);
  writeProgramHeader(view, phoff, {
    type: PT_NOTE,
    flags: PF_R,
    offset: BigInt(noteOffset),
    addr: 0n,
    fileSize: BigInt(noteSize),
    memSize: BigInt(noteSize),
    align: 4n
  });
  writeProgramHeader(view, phoff + PROGRAM_HEADER_SIZE, {
    type: PT_LOAD,
    flags: PF_R | PF_W | PF_X,
    offset: BigInt(KERNEL_FILE_OFFSET),
    addr: layout.loadAddr,
    fileSize: BigInt(layout.kernelSize),
    memSize: BigInt(layout.kernelSize),
    align: 0x1000n
  });
  view.setUint32(noteOffset, 4, true);
  view.setUint32(noteOffset + 4, 4, true);
  view.setUint32(noteOffset + 8, XEN_ELFNOTE_PHYS32_ENTRY, true);
  out.set([88, 101, 110, 0], noteOffset + 12);
  view.setUint32(noteOffset + 16, Number(layout.pvhEntry), true);
  return out;
}
function writeProgramHeader(view, at, ph) {
  view.setUint32(at, ph.type, true);
  view.setUint32(at + 4, ph.flags, true);
  view.setBigUint64(at + 8, ph.offset, true);
  view.setBigUint64(at + 16, ph.addr, true);
  view.setBigUint64(at + 24, ph.addr, true);
  view.setBigUint64(at + 32, ph.fileSize, true);
  view.setBigUint64(at + 40, ph.memSize, true);
  view.setBigUint64(at + 48, ph.align, true);
}
function parsePvhElfHeader(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, false) !== 2135247942 || bytes[4] !== 2 || bytes[5] !== 1) throw new IiiError("FirmwareCorrupt", "not a little-endian ELF64 file");
  const phoff = Number(view.getBigUint64(32, true));
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  const result = { entry: view.getBigUint64(24, true), load: void 0, phys32Entry: void 0 };
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = view.getUint32(at, true);
    const offset = view.getBigUint64(at + 8, true);
    if (type === PT_LOAD && !result.load) {
      result.load = {
        offset,
        vaddr: view.getBigUint64(at + 16, true),
        paddr: view.getBigUint64(at + 24, true),
        fileSize: view.getBigUint64(at + 32, true),
        memSize: view.getBigUint64(at + 40, true)
      };
    } else if (type === PT_NOTE) {
      const end = Number(offset + view.getBigUint64(at + 32, true));
      result.phys32Entry ??= findXenPhys32Entry(bytes.subarray(Number(offset), end));
    }
  }
  return result;
}
function findXenPhys32Entry(notes) {
  const view = new DataView(notes.buffer, notes.byteOffset, notes.byteLength);
  let at = 0;
  while (at + 12 <= notes.byteLength) {
    const namesz = view.getUint32(at, true);
    const descsz = view.getUint32(at + 4, true);
    const type = view.getUint32(at + 8, true);
    const nameAt = at + 12;
    const descAt = nameAt + align4(namesz);
    if (descAt + descsz > notes.byteLength) return void 0;
    if (namesz === 4 && type === XEN_ELFNOTE_PHYS32_ENTRY && isXen(notes, nameAt)) {
      if (descsz === 4) return BigInt(view.getUint32(descAt, true));
      if (descsz === 8) return view.getBigUint64(descAt, true);
    }
    at = descAt + align4(descsz);
  }
  return void 0;
}
function scanImageForPhys32Entry(image) {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  for (let i = 12; i + 8 <= image.byteLength; i += 4) {
    if (!isXen(image, i)) continue;
    if (view.getUint32(i - 12, true) !== 4 || view.getUint32(i - 4, true) !== XEN_ELFNOTE_PHYS32_ENTRY) continue;
    const descsz = view.getUint32(i - 8, true);
    if (descsz === 4) return BigInt(view.getUint32(i + 4, true));
    if (descsz === 8 && i + 12 <= image.byteLength) return view.getBigUint64(i + 4, true);
  }
  return void 0;
}
function isXen(bytes, at) {
  return bytes[at] === 88 && bytes[at + 1] === 101 && bytes[at + 2] === 110 && bytes[at + 3] === 0;
}
function align4(n) {
  return n + 3 & ~3;
}

// ../worker/src/firmware/kernel.ts
function kernelCacheDir(env = process.env) {
  return join2(iiiHome(env), "cache", "kernel");
}
async function ensureKernel(firmware, options = {}) {
  const dir = options.cacheDir ?? kernelCacheDir(options.env);
  const elfPath = join2(dir, `${firmware.sha256}.elf`);
  const existing = readCachedKernel(elfPath);
  if (existing) return { ...existing, elfPath, firmwareSha256: firmware.sha256, cached: true };
  try {
    mkdirsSync(dir);
  } catch (error) {
    throw new IiiError("HomeUnwritable", `cannot create the kernel cache ${dir}: ${error.message}`, { cause: error });
  }
  const tag = `${process.pid}.${randomBytes(4).toString("hex")}`;
  const rawPath = join2(dir, `.${firmware.sha256}.${tag}.raw`);
  try {
    const info = await extractKernelImage(firmware.path, rawPath);
    const image = await readFile(rawPath);
    if (image.byteLength !== info.sizeBytes) {
      throw new IiiError("FirmwareCorrupt", `${firmware.path}: kernel image is ${image.byteLength} bytes, krunfw_get_kernel said ${info.sizeBytes}`);
    }
    const pvhEntry = scanImageForPhys32Entry(image) ?? info.loadAddr;
    const header = buildPvhElfHeader({ loadAddr: info.loadAddr, pvhEntry, kernelSize: image.byteLength });
    await writeFileAtomic(elfPath, Buffer.concat([header, image]), { mode: 420 });
    return { elfPath, firmwareSha256: firmware.sha256, loadAddr: info.loadAddr, pvhEntry, sizeBytes: image.byteLength, cached: false };
  } finally {
    await rm(rawPath, { force: true });
  }
}
function readCachedKernel(elfPath) {
  let fd;
  try {
    const size = statSync2(elfPath).size;
    fd = openSync(elfPath, "r");
    const header = new Uint8Array(KERNEL_FILE_OFFSET);
    if (readSync(fd, header, 0, header.byteLength, 0) !== header.byteLength) return void 0;
    const parsed = parsePvhElfHeader(header);
    if (!parsed.load || parsed.phys32Entry === void 0) return void 0;
    if (BigInt(size) !== parsed.load.offset + parsed.load.fileSize) return void 0;
    return { loadAddr: parsed.load.paddr, pvhEntry: parsed.phys32Entry, sizeBytes: Number(parsed.load.fileSize) };
  } catch {
    return void 0;
  } finally {
    if (fd !== void 0) closeSync(fd);
  }
}

// ../worker/src/firmware/resolver.ts
import { existsSync, readdirSync, statSync as statSync4 } from "node:fs";
import { createRequire as createRequire3 } from "node:module";
import { dirname as dirname3, join as join4 } from "node:path";

// ../worker/src/firmware/digest.ts
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync as statSync3 } from "node:fs";
import { dirname as dirname2 } from "node:path";
async function sha256File(path) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk);
  return hash.digest("hex");
}
async function sha256FileMemo(path, memoPath) {
  if (!memoPath) return sha256File(path);
  const st = statSync3(path);
  const key = { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
  let memo = {};
  try {
    memo = JSON.parse(readFileSync(memoPath, "utf8"));
  } catch {
  }
  const known = memo[path];
  if (known && known.dev === key.dev && known.ino === key.ino && known.size === key.size && known.mtimeMs === key.mtimeMs && known.ctimeMs === key.ctimeMs && /^[0-9a-f]{64}$/.test(known.sha256)) {
    return known.sha256;
  }
  const sha256 = await sha256File(path);
  try {
    memo[path] = { ...key, sha256 };
    mkdirsSync(dirname2(memoPath));
    writeFileAtomicSync(memoPath, JSON.stringify(memo), { fsync: false });
  } catch {
  }
  return sha256;
}

// ../worker/src/firmware/download.ts
import { createHash as createHash2 } from "node:crypto";
import { createReadStream as createReadStream2, createWriteStream } from "node:fs";
import { chmod, rename, rm as rm2, stat as stat2, symlink, unlink } from "node:fs/promises";
import { join as join3 } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { randomBytes as randomBytes2 } from "node:crypto";
import * as tar from "tar-stream";

// ../worker/src/images/registry/proxy.ts
function proxySettings(env = process.env) {
  const pick = (name) => env[name.toLowerCase()] || env[name.toUpperCase()] || void 0;
  const settings = {};
  const httpProxy = pick("http_proxy");
  const httpsProxy = pick("https_proxy");
  const noProxy = pick("no_proxy");
  if (httpProxy) settings.httpProxy = httpProxy;
  if (httpsProxy) settings.httpsProxy = httpsProxy;
  if (noProxy) settings.noProxy = noProxy;
  return settings;
}
var agents = /* @__PURE__ */ new Map();
async function proxyDispatcher(env = process.env) {
  const settings = proxySettings(env);
  if (!settings.httpProxy && !settings.httpsProxy) return void 0;
  const key = JSON.stringify(settings);
  let agent = agents.get(key);
  if (!agent) {
    const { EnvHttpProxyAgent } = await import("undici");
    agent = new EnvHttpProxyAgent({ httpProxy: settings.httpProxy ?? "", httpsProxy: settings.httpsProxy ?? settings.httpProxy ?? "", noProxy: settings.noProxy ?? "" });
    agents.set(key, agent);
  }
  return agent;
}
async function registryFetch(url, init = {}, env = process.env) {
  const dispatcher = await proxyDispatcher(env);
  if (!dispatcher) return fetch(url, init);
  const { fetch: undiciFetch } = await import("undici");
  return await undiciFetch(url, { ...init, dispatcher });
}

// ../worker/src/firmware/download.ts
async function downloadFirmware(manifest, entry, options) {
  const { libDir } = options;
  try {
    await mkdirs(libDir);
  } catch (error) {
    throw new IiiError("HomeUnwritable", `cannot create ${libDir}: ${error.message}`, { cause: error });
  }
  const tag = `${process.pid}.${randomBytes2(4).toString("hex")}`;
  const downloadPath = join3(libDir, `.${entry.file}.${tag}.download`);
  const extractedPath = join3(libDir, `.${entry.file}.${tag}.tmp`);
  const finalPath = join3(libDir, entry.file);
  try {
    const received = await fetchToFile(entry.url, downloadPath, options);
    let candidate = downloadPath;
    if (entry.archive) {
      if (entry.archive.size !== void 0 && received.bytes !== entry.archive.size) {
        throw new IiiError(
          "FirmwareDownloadFailed",
          `download of ${entry.url} is ${received.bytes} bytes, expected ${entry.archive.size} (truncated or wrong file)`
        );
      }
      if (entry.archive.sha256 && received.sha256 !== entry.archive.sha256) {
        throw digestMismatch(`downloaded archive ${entry.url}`, received.sha256, entry.archive.sha256);
      }
      await extractMember(downloadPath, entry.archive.member, extractedPath, entry.url);
      candidate = extractedPath;
    }
    const size = (await stat2(candidate)).size;
    const digest = candidate === downloadPath ? received.sha256 : await sha256File(candidate);
    if (digest !== entry.sha256) {
      throw digestMismatch(`downloaded libkrunfw ${manifest.version} from ${entry.url}`, digest, entry.sha256);
    }
    if (size !== entry.size) {
      throw new IiiError("FirmwareDownloadFailed", `downloaded libkrunfw from ${entry.url} is ${size} bytes, expected ${entry.size}`);
    }
    await chmod(candidate, 493);
    await rename(candidate, finalPath);
    await linkSonames(libDir, entry);
    return finalPath;
  } finally {
    await rm2(downloadPath, { force: true });
    await rm2(extractedPath, { force: true });
  }
}
function digestMismatch(what, actual, expected) {
  return new IiiError("FirmwareCorrupt", `${what} has sha256 ${actual}, expected ${expected} (firmware/manifest.json)`);
}
async function fetchToFile(url, path, options) {
  let response;
  try {
    response = await registryFetch(url, {
      signal: AbortSignal.timeout(options.timeoutMs ?? 12e4),
      headers: { "user-agent": options.userAgent ?? "iii-worker" },
      redirect: "follow"
    }, options.env);
  } catch (error) {
    throw new IiiError("FirmwareDownloadFailed", `cannot download libkrunfw from ${url}: ${describeFetchError(error)}`, { cause: error });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => void 0);
    throw new IiiError(
      "FirmwareDownloadFailed",
      `cannot download libkrunfw from ${url}: HTTP ${response.status} ${response.statusText}`.trimEnd() + "; set III_LIBKRUNFW_PATH to a local libkrunfw"
    );
  }
  const lengthHeader = response.headers.get("content-length");
  const totalBytes = lengthHeader === null ? void 0 : Number(lengthHeader);
  const hash = createHash2("sha256");
  let receivedBytes = 0;
  const meter = new Transform({
    transform(chunk, _encoding, callback) {
      hash.update(chunk);
      receivedBytes += chunk.byteLength;
      options.onProgress?.({ receivedBytes, totalBytes });
      callback(null, chunk);
    }
  });
  try {
    await pipeline(Readable.fromWeb(response.body), meter, createWriteStream(path, { flags: "wx", mode: 384 }));
  } catch (error) {
    throw new IiiError(
      "FirmwareDownloadFailed",
      `download of ${url} failed after ${receivedBytes}${totalBytes === void 0 ? "" : ` of ${totalBytes}`} bytes: ${describeFetchError(error)}`,
      { cause: error }
    );
  }
  if (totalBytes !== void 0 && receivedBytes !== totalBytes) {
    throw new IiiError("FirmwareDownloadFailed", `download of ${url} is truncated: ${receivedBytes} of ${totalBytes} bytes`);
  }
  return { bytes: receivedBytes, sha256: hash.digest("hex") };
}
function describeFetchError(error) {
  const err = error;
  if (err?.name === "TimeoutError") return "timed out";
  const cause = err?.cause;
  return cause ? `${err.message} (${cause.code ?? cause.message})` : String(err?.message ?? error);
}
async function extractMember(archivePath, member, outPath, url) {
  const extract2 = tar.extract();
  let found = false;
  const consume = (async () => {
    for await (const entry of extract2) {
      if (!found && entry.header.name === member && (entry.header.type === "file" || entry.header.type === "contiguous-file")) {
        found = true;
        await pipeline(entry, createWriteStream(outPath, { flags: "wx", mode: 384 }));
      } else {
        entry.resume();
      }
    }
  })();
  try {
    await Promise.all([pipeline(createReadStream2(archivePath), createGunzip(), extract2), consume]);
  } catch (error) {
    throw new IiiError("FirmwareDownloadFailed", `cannot unpack ${url}: ${error.message}`, { cause: error });
  }
  if (!found) throw new IiiError("FirmwareDownloadFailed", `'${member}' not found in the archive downloaded from ${url}`);
}
async function linkSonames(libDir, entry) {
  const links = [];
  if (entry.soname !== entry.file) links.push([entry.soname, entry.file]);
  const devName = entry.soname.replace(/\.so\.\d+$/, ".so").replace(/\.\d+\.dylib$/, ".dylib");
  if (devName !== entry.soname) links.push([devName, entry.soname]);
  for (const [name, target] of links) {
    const path = join3(libDir, name);
    await unlink(path).catch(() => void 0);
    await symlink(target, path).catch((error) => {
      if (error.code !== "EEXIST") throw error;
    });
  }
}

// ../../firmware/manifest.json
var manifest_default = {
  name: "libkrunfw",
  version: "5.6.1",
  abi: 5,
  platforms: {
    "linux-x86_64": {
      file: "libkrunfw.so.5.6.1",
      soname: "libkrunfw.so.5",
      size: 21628880,
      sha256: "ce9a749e8471e89aa5e2ad88de0c1581c3384c100bcb107a75bb12739a12d590",
      url: "https://registry.npmjs.org/@superradcompany/microsandbox-linux-x64-gnu/-/microsandbox-linux-x64-gnu-0.7.2.tgz",
      archive: {
        format: "tar.gz",
        member: "package/lib/libkrunfw.so.5.6.1",
        size: 42820523,
        sha256: "7aacbb9ab86a152813d005c6ba12551b104997be9234a010a3473e4b2e9703e0"
      }
    }
  }
};

// ../worker/src/firmware/manifest.ts
var FIRMWARE_MANIFEST = manifest_default;
function firmwarePlatform(platform = process.platform, arch = process.arch) {
  const cpu = arch === "x64" ? "x86_64" : arch === "arm64" ? "aarch64" : arch;
  return `${platform}-${cpu}`;
}
function platformEntry(manifest, platform) {
  const entry = manifest.platforms[platform];
  if (!entry) {
    throw new IiiError(
      "FirmwareNotFound",
      `no pinned libkrunfw ${manifest.version} for ${platform} (firmware/manifest.json has ${Object.keys(manifest.platforms).join(", ")}); set III_LIBKRUNFW_PATH`
    );
  }
  return entry;
}

// ../worker/src/firmware/resolver.ts
var DEFAULT_SYSTEM_LIB_DIRS = [
  "/usr/lib64",
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/usr/local/lib",
  "/usr/lib",
  "/opt/homebrew/lib",
  "/opt/homebrew/opt/libkrunfw/lib"
];
var NPM_PACKAGES = {
  "linux-x86_64": "@superradcompany/microsandbox-linux-x64-gnu",
  "linux-aarch64": "@superradcompany/microsandbox-linux-arm64-gnu",
  "darwin-aarch64": "@superradcompany/microsandbox-darwin-arm64"
};
var FirmwareResolver = class {
  env;
  manifest;
  platform;
  options;
  constructor(options = {}) {
    this.options = options;
    this.env = options.env ?? process.env;
    this.manifest = options.manifest ?? FIRMWARE_MANIFEST;
    this.platform = options.platform ?? firmwarePlatform();
  }
  get libDir() {
    return join4(iiiHome(this.env), "lib");
  }
  get downloadEnabled() {
    return this.options.download ?? this.env.III_LIBKRUNFW_NO_DOWNLOAD !== "1";
  }
  /** Resolves, downloading as the last resort. Throws FirmwareNotFound / FirmwareCorrupt / FirmwareDownloadFailed. */
  async resolve() {
    const { winner, candidates } = await this.walk(true);
    return winner ?? this.fail(candidates);
  }
  /** Every source's status without downloading anything (for `doctor`). Never throws for a mismatch. */
  async inspect() {
    return this.walk(false);
  }
  async walk(allowDownload) {
    const entry = platformEntry(this.manifest, this.platform);
    const candidates = [];
    let winner;
    const probes = [
      ["env", () => this.probeEnv(entry)],
      ["home", () => this.probeFiles("home", join4(this.libDir, entry.file), [join4(this.libDir, entry.file)], entry)],
      ["system", () => this.probeSystem(entry)],
      ["npm", () => this.probeNpm(entry)]
    ];
    for (const [source, probe] of probes) {
      if (winner) {
        candidates.push({ source, location: "", status: "skipped", reason: `not consulted: ${winner.source} came first` });
        continue;
      }
      const candidate = await probe();
      candidates.push(candidate);
      if (candidate.status === "found") winner = this.resolved(candidate, candidates);
      else if (allowDownload && (candidate.status === "mismatch" || candidate.status === "unreadable")) this.fail(candidates);
      else if (allowDownload && source === "env" && this.env.III_LIBKRUNFW_PATH) this.fail(candidates);
    }
    if (winner) {
      candidates.push({ source: "download", location: entry.url, status: "skipped", reason: `not needed: ${winner.source} came first` });
    } else if (!this.downloadEnabled) {
      candidates.push({ source: "download", location: entry.url, status: "skipped", reason: "downloads disabled (III_LIBKRUNFW_NO_DOWNLOAD=1)" });
    } else if (!allowDownload) {
      candidates.push({ source: "download", location: entry.url, status: "available", reason: `would download libkrunfw ${this.manifest.version} (${entry.size} bytes) on first start` });
    } else {
      this.options.onDownloadStart?.(entry.url);
      const path = await downloadFirmware(this.manifest, entry, {
        libDir: this.libDir,
        timeoutMs: this.options.downloadTimeoutMs,
        onProgress: this.options.onDownloadProgress,
        env: this.env
      });
      const candidate = { source: "download", location: entry.url, status: "found", reason: `downloaded and verified, installed at ${path}`, path, sha256: entry.sha256 };
      candidates.push(candidate);
      winner = this.resolved(candidate, candidates);
    }
    return { winner, candidates };
  }
  resolved(candidate, candidates) {
    return { source: candidate.source, path: candidate.path, sha256: candidate.sha256, version: this.manifest.version, candidates };
  }
  fail(candidates) {
    const bad = candidates.find((c) => c.status === "mismatch");
    if (bad) throw digestMismatch(`libkrunfw at ${bad.path} (${bad.source})`, bad.sha256, platformEntry(this.manifest, this.platform).sha256);
    const unreadable = candidates.find((c) => c.status === "unreadable");
    if (unreadable) throw new IiiError("FirmwareNotFound", `libkrunfw at ${unreadable.path} (${unreadable.source}): ${unreadable.reason}`);
    const env = candidates.find((c) => c.source === "env");
    if (env && this.env.III_LIBKRUNFW_PATH) throw new IiiError("FirmwareNotFound", `III_LIBKRUNFW_PATH=${this.env.III_LIBKRUNFW_PATH}: ${env.reason}`);
    const entry = platformEntry(this.manifest, this.platform);
    throw new IiiError(
      "FirmwareNotFound",
      `libkrunfw ${this.manifest.version} (${entry.file}) not found (III_LIBKRUNFW_PATH, ${this.libDir}, system lib dirs, npm package) and downloads are disabled; set III_LIBKRUNFW_PATH`
    );
  }
  async probeEnv(entry) {
    const value = this.env.III_LIBKRUNFW_PATH;
    if (!value) return { source: "env", location: "III_LIBKRUNFW_PATH", status: "absent", reason: "III_LIBKRUNFW_PATH is not set" };
    let isDir;
    try {
      isDir = statSync4(value).isDirectory();
    } catch (error) {
      return { source: "env", location: value, status: "absent", reason: errnoCode(error) === "ENOENT" ? "no such file or directory" : error.message };
    }
    if (!isDir) return this.probeFiles("env", value, [value], entry);
    const names = [entry.file, entry.soname, entry.soname.replace(/\.so\.\d+$/, ".so")];
    const found = names.map((name) => join4(value, name)).filter((path) => existsSync(path));
    if (found.length === 0) return { source: "env", location: value, status: "absent", reason: `directory holds none of ${names.join(", ")}` };
    return this.probeFiles("env", value, found.slice(0, 1), entry);
  }
  async probeSystem(entry) {
    const dirs = this.options.systemDirs ?? DEFAULT_SYSTEM_LIB_DIRS;
    const paths = dirs.map((dir) => join4(dir, entry.file));
    const candidate = await this.probeFiles("system", dirs.join(":"), paths, entry);
    if (candidate.status === "absent") {
      const others = dirs.flatMap((dir) => safeReaddir(dir).filter((n) => /^libkrunfw\.(so\.\d+\.\d+\.\d+|\d+\.dylib)$/.test(n)).map((n) => join4(dir, n)));
      if (others.length > 0) candidate.reason += `; other versions present, not pinned: ${others.join(", ")}`;
    }
    return candidate;
  }
  async probeNpm(entry) {
    const pkg = NPM_PACKAGES[this.platform];
    let dir = this.options.npmPackageDir;
    if (dir === null) return { source: "npm", location: pkg ?? "(none)", status: "skipped", reason: "npm package lookup disabled" };
    if (dir === void 0) {
      if (!pkg) return { source: "npm", location: "(none)", status: "absent", reason: `no npm firmware package for ${this.platform}` };
      try {
        dir = dirname3(createRequire3(import.meta.url).resolve(`${pkg}/package.json`));
      } catch {
        return { source: "npm", location: pkg, status: "absent", reason: `optional dependency ${pkg} is not installed` };
      }
    }
    return this.probeFiles("npm", pkg ?? dir, [join4(dir, "lib", entry.file)], entry);
  }
  /** The first existing path among `paths`, verified. */
  async probeFiles(source, location, paths, entry) {
    for (const path of paths) {
      let size;
      try {
        const st = statSync4(path);
        if (!st.isFile()) continue;
        size = st.size;
      } catch {
        continue;
      }
      let digest;
      try {
        digest = await sha256FileMemo(path, this.options.digestMemo === false ? void 0 : join4(iiiHome(this.env), "cache", "firmware-digests.json"));
      } catch (error) {
        return { source, location, status: "unreadable", reason: `cannot read: ${error.message}`, path };
      }
      if (digest !== entry.sha256) {
        return { source, location, status: "mismatch", reason: `sha256 ${digest} (${size} bytes), expected ${entry.sha256}`, path, sha256: digest };
      }
      return { source, location, status: "found", reason: `sha256 matches libkrunfw ${this.manifest.version}`, path, sha256: digest };
    }
    return { source, location, status: "absent", reason: paths.length === 1 ? "not there" : `no ${entry.file} in any of them` };
  }
};
function safeReaddir(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
function resolveFirmware(options = {}) {
  return new FirmwareResolver(options).resolve();
}

// ../worker/src/firmware/index.ts
async function resolveKernel(options = {}) {
  const firmware = await resolveFirmware(options);
  const kernel2 = await ensureKernel(firmware, { env: options.env, cacheDir: options.cacheDir });
  return { firmware, kernel: kernel2 };
}

// ../worker/src/vmm/qemu-vmm.ts
import { spawn } from "node:child_process";
import { closeSync as closeSync4, existsSync as existsSync3, mkdirSync as mkdirSync2, openSync as openSync4, readFileSync as readFileSync5, statSync as statSync5 } from "node:fs";
import { rm as rm3 } from "node:fs/promises";
import { dirname as dirname4, join as join7 } from "node:path";

// ../worker/src/host/which.ts
import { accessSync, constants } from "node:fs";
import { delimiter, join as join5 } from "node:path";
function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
function which(name, extraDirs = [], env = process.env) {
  const dirs = [...(env.PATH ?? "").split(delimiter), ...extraDirs];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join5(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return void 0;
}

// ../worker/src/host/binaries.ts
function findQemu(env = process.env) {
  if (env.III_QEMU_BIN) return isExecutable(env.III_QEMU_BIN) ? env.III_QEMU_BIN : void 0;
  return which("qemu-system-x86_64", ["/usr/bin", "/usr/local/bin"], env);
}
var VIRTIOFSD_DIRS = ["/usr/lib/qemu", "/usr/libexec", "/usr/lib/virtiofsd"];
function findVirtiofsd(env = process.env) {
  if (env.III_VIRTIOFSD_BIN) return isExecutable(env.III_VIRTIOFSD_BIN) ? env.III_VIRTIOFSD_BIN : void 0;
  return which("virtiofsd", VIRTIOFSD_DIRS, env);
}

// ../worker/src/host/process-identity.ts
import { readFileSync as readFileSync2 } from "node:fs";
function processStartTime(pid) {
  try {
    const stat3 = readFileSync2(`/proc/${pid}/stat`, "utf8");
    const fields = stat3.slice(stat3.lastIndexOf(")") + 2).split(" ");
    const state = fields[0];
    if (state === "Z" || state === "X") return void 0;
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : void 0;
  } catch {
    return void 0;
  }
}

// ../worker/src/vmm/accel.ts
import { closeSync as closeSync2, existsSync as existsSync2, openSync as openSync2, readFileSync as readFileSync3 } from "node:fs";
function chooseAccel(facts) {
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
function probeAccelFacts(env = process.env) {
  let flags = "";
  try {
    const cpuinfo = readFileSync3("/proc/cpuinfo", "utf8");
    flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? "";
  } catch {
  }
  const words = new Set(flags.trim().split(/\s+/));
  const facts = {
    hardwareVirtualization: words.has("vmx") ? "vmx" : words.has("svm") ? "svm" : void 0,
    paravirtualKvm: existsSync2("/sys/module/kvm_pvm"),
    devKvmOpens: false
  };
  try {
    closeSync2(openSync2("/dev/kvm", "r+"));
    facts.devKvmOpens = true;
  } catch (error) {
    facts.devKvmError = error.message;
  }
  if (env.III_ACCEL) facts.override = env.III_ACCEL;
  return facts;
}
function resolveAccel(env = process.env) {
  const facts = probeAccelFacts(env);
  const choice = chooseAccel(facts);
  if (facts.override) choice.reason += `; host probe: ${chooseAccel({ ...facts, override: void 0 }).reason}`;
  return choice;
}

// ../worker/src/vmm/console-log.ts
import { closeSync as closeSync3, fstatSync, openSync as openSync3, readSync as readSync2 } from "node:fs";
function readTail(path, maxBytes = 4096, fromOffset = 0) {
  let fd;
  try {
    fd = openSync3(path, "r");
    const size = fstatSync(fd).size;
    const length = Math.max(0, Math.min(size - fromOffset, maxBytes));
    const buf = Buffer.alloc(length);
    readSync2(fd, buf, 0, length, size - length);
    return buf.toString("utf8");
  } catch {
    return "";
  } finally {
    if (fd !== void 0) closeSync3(fd);
  }
}
function consoleTail(path, lines = 20, fromOffset = 0) {
  return readTail(path, 16 * 1024, fromOffset).split(/\r?\n/).filter((line) => line.trim().length > 0).slice(-lines).join("\n");
}
async function waitForLine(path, match, options) {
  const started = performance.now();
  const test = typeof match === "function" ? match : (line) => match.test(line);
  let offset = options.fromOffset ?? 0;
  let partial = "";
  let fd;
  try {
    for (; ; ) {
      if (fd === void 0) {
        try {
          fd = openSync3(path, "r");
        } catch {
        }
      }
      if (fd !== void 0) {
        const size = fstatSync(fd).size;
        if (size < offset) {
          offset = 0;
          partial = "";
        }
        if (size > offset) {
          const buf = Buffer.alloc(size - offset);
          readSync2(fd, buf, 0, buf.length, offset);
          offset = size;
          const lines = (partial + buf.toString("utf8")).split("\n");
          partial = lines.pop() ?? "";
          for (const raw of lines) {
            const line = raw.replace(/\r$/, "");
            if (test(line)) return { line, waitedMs: performance.now() - started };
          }
        }
      }
      const stopped = options.stop?.();
      if (stopped !== void 0) throw new IiiError("VmBootFailed", stopped);
      if (performance.now() - started > options.timeoutMs) throw new IiiError("VmBootFailed", `no matching line in ${path} after ${options.timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 5));
    }
  } finally {
    if (fd !== void 0) closeSync3(fd);
  }
}

// ../worker/src/vmm/host-clock.ts
import { readFileSync as readFileSync4 } from "node:fs";
function hostTscKhz() {
  try {
    const khz = Number(readFileSync4("/sys/devices/system/cpu/cpu0/tsc_freq_khz", "utf8").trim());
    if (Number.isFinite(khz) && khz > 0) return Math.round(khz);
  } catch {
  }
  try {
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync4("/proc/cpuinfo", "utf8"))?.[1];
    if (mhz) return Math.round(Number(mhz) * 1e3);
  } catch {
  }
  return void 0;
}

// ../worker/src/vmm/qemu-argv.ts
import { join as join6 } from "node:path";
import { CONTROL_PORT_NAME, GUEST_PATHS } from "@iii/init";
var MAX_VIRTIOFS_TAG_BYTES = 36;
var MAX_KERNEL_CMDLINE_BYTES = 2048;
var MAX_CMDLINE_ENV = 30;
var TCG_BOOT_TUNING = ["tsc=reliable", "noapictimer", "initcall_blacklist=jent_mod_init,svm_init,vmx_init"];
var TCG_BOOT_TUNING_SMP = ["initcall_blacklist=jent_mod_init,svm_init,vmx_init"];
function buildKernelCmdline(spec) {
  const words = [
    "console=hvc0",
    `root=${spec.rootTag}`,
    "rootfstype=virtiofs",
    "rw",
    `init=${spec.init}`,
    "reboot=t",
    "panic=-1",
    "quiet"
  ];
  if (spec.accel === "tcg" && spec.tscKhz !== void 0) {
    if (!Number.isInteger(spec.tscKhz) || spec.tscKhz <= 0) throw invalid(`tsc_early_khz must be a positive integer, got ${spec.tscKhz}`);
    words.push(`tsc_early_khz=${spec.tscKhz}`);
  }
  if (spec.accel === "tcg" && spec.tcgTuning !== false) words.push(...(spec.vcpus ?? 1) > 1 ? TCG_BOOT_TUNING_SMP : TCG_BOOT_TUNING);
  for (const word of spec.extra ?? []) {
    if (!word || /[\s"\x00-\x1f]/.test(word)) throw invalid(`kernel command line word ${JSON.stringify(word)} must be non-empty without spaces, quotes or control characters`);
    words.push(word);
  }
  const env = Object.entries(spec.env ?? {});
  if (env.length > MAX_CMDLINE_ENV) throw invalid(`${env.length} env entries on the kernel command line; the kernel passes at most ${MAX_CMDLINE_ENV} to init`);
  for (const [key, value] of env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw invalid(`env name ${JSON.stringify(key)} is not a valid kernel command line variable`);
    if (/["\x00-\x1f\x7f]/.test(value)) throw invalid(`env ${key}: the kernel command line cannot carry double quotes or control characters`);
    words.push(/[\s]/.test(value) || value === "" ? `${key}="${value}"` : `${key}=${value}`);
  }
  const cmdline = words.join(" ");
  if (Buffer.byteLength(cmdline) > MAX_KERNEL_CMDLINE_BYTES - 512) {
    throw invalid(`kernel command line is ${Buffer.byteLength(cmdline)} bytes; at most ${MAX_KERNEL_CMDLINE_BYTES - 512} leave room for QEMU's device entries`);
  }
  return cmdline;
}
function buildQemuArgv(spec) {
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > 255) throw invalid(`vCPUs must be an integer in 1..255, got ${spec.vcpus}`);
  if (!Number.isFinite(spec.memoryBytes) || spec.memoryBytes < 64 * MiB) throw invalid(`memory must be at least 64 MiB, got ${spec.memoryBytes} bytes`);
  if (spec.shares.length === 0) throw invalid("a VM needs its root share");
  const memoryMiB = Math.ceil(spec.memoryBytes / MiB);
  const argv = [
    // acpi=off: only then does microvm put virtio_mmio.device= on the kernel cmdline (the kernel has no
    // ACPI). Keep pic/pit/rtc: pic=off hangs the reboot, pit=off hangs the boot, rtc=off adds ~2 s.
    // memory-backend: vhost-user (virtiofsd) needs guest RAM it can map, i.e. a shared memfd.
    "-M",
    "microvm,acpi=off,x-option-roms=off,memory-backend=mem",
    "-accel",
    spec.accel,
    // -cpu max under TCG: a Node PID 1 boots in ≈2.05 s vs ≈3.1 s with the default model (DESIGN §3).
    "-cpu",
    spec.accel === "kvm" ? "host" : "max",
    "-smp",
    String(spec.vcpus),
    "-m",
    `${memoryMiB}M`,
    "-object",
    `memory-backend-memfd,id=mem,size=${memoryMiB}M,share=on`,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    // The guest's reboot ends QEMU (with reboot=t on the kernel side).
    "-no-reboot",
    // virtiofsd refuses legacy virtio ("virtio legacy devices aren't supported").
    "-global",
    "virtio-mmio.force-legacy=false",
    "-kernel",
    spec.kernelPath,
    "-append",
    spec.cmdline
  ];
  spec.shares.forEach((share, i) => {
    argv.push("-chardev", `socket,id=fs${i},path=${opt(share.socketPath)}`);
    argv.push("-device", `vhost-user-fs-device,chardev=fs${i},tag=${opt(share.tag)}`);
  });
  argv.push("-device", "virtio-serial-device");
  argv.push("-chardev", `file,id=console,path=${opt(spec.consoleLogPath)}${spec.consoleAppend ? ",append=on" : ""}`);
  argv.push("-device", "virtconsole,chardev=console");
  if (spec.control) {
    const server = (spec.control.mode ?? "client") === "server" ? ",server=on,wait=off" : ",server=off";
    argv.push("-chardev", `socket,id=control,path=${opt(spec.control.socketPath)}${server}`);
    argv.push("-device", `virtserialport,chardev=control,name=${CONTROL_PORT_NAME}`);
  }
  if (spec.network) {
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(spec.network.mac)) throw invalid(`guest MAC ${spec.network.mac} is not aa:bb:cc:dd:ee:ff`);
    argv.push("-netdev", `stream,id=n0,server=off,addr.type=unix,addr.path=${opt(spec.network.socketPath)}`);
    argv.push("-device", `virtio-net-device,netdev=n0,mac=${spec.network.mac}`);
  }
  argv.push("-chardev", `socket,id=qmp,path=${opt(spec.qmpSocketPath)},server=on,wait=off`);
  argv.push("-mon", "chardev=qmp,mode=control");
  return argv;
}
var VIRTIOFS_XATTRMAP = ":prefix:all:trusted.:user.iii.x.::ok:all:::";
function buildVirtiofsdCommand(virtiofsdPath, spec) {
  validateTag(spec.share.tag);
  const args = [
    `--socket-path=${spec.socketPath}`,
    "-o",
    `source=${spec.share.hostDir}`,
    "-o",
    `cache=${spec.share.cache ?? spec.cache ?? "auto"}`,
    ...spec.share.timeoutSec !== void 0 ? ["-o", `timeout=${spec.share.timeoutSec}`] : [],
    // xattrs on: the guest's trusted.* travel as @iii/filesystem's stored form (user.iii.x.trusted.*), since
    // virtiofsd lacks the CAP_SYS_ADMIN the host kernel wants for trusted.*; every other name passes as is.
    ...spec.share.xattr ? ["-o", `xattrmap=${VIRTIOFS_XATTRMAP}`] : [],
    "-o",
    "sandbox=namespace",
    "-o",
    "log_level=warn"
  ];
  if (!spec.share.readOnly) return [virtiofsdPath, ...args];
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "--",
    "/bin/sh",
    "-c",
    'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"',
    spec.share.hostDir,
    virtiofsdPath,
    ...args
  ];
}
function validateTag(tag) {
  if (!tag || Buffer.byteLength(tag) > MAX_VIRTIOFS_TAG_BYTES || !/^[A-Za-z0-9_.-]+$/.test(tag)) {
    throw invalid(`virtio-fs tag ${JSON.stringify(tag)} must be 1..${MAX_VIRTIOFS_TAG_BYTES} bytes of [A-Za-z0-9_.-]`);
  }
}
var MiB = 1024 * 1024;
function opt(value) {
  return value.replaceAll(",", ",,");
}
function invalid(message) {
  return new IiiError("InvalidOption", message);
}
function buildVmCommands(config, host) {
  const shares = [config.root, ...config.shares ?? []];
  const daemons = shares.map((share, i) => {
    const socketPath = join6(config.runDir, `fs${i}.sock`);
    return { share, socketPath, command: buildVirtiofsdCommand(host.virtiofsdPath, { share, socketPath, cache: config.virtiofsdCache }) };
  });
  const qmpSocketPath = join6(config.runDir, "qmp.sock");
  const cmdline = buildKernelCmdline({
    rootTag: config.root.tag,
    init: config.init ?? GUEST_PATHS.init,
    accel: host.accel,
    tscKhz: host.accel === "tcg" ? host.tscKhz : void 0,
    tcgTuning: config.tcgTuning,
    vcpus: config.vcpus,
    extra: config.cmdlineExtra,
    env: config.env
  });
  const argv = buildQemuArgv({
    kernelPath: config.kernelPath,
    cmdline,
    accel: host.accel,
    vcpus: config.vcpus,
    memoryBytes: config.memoryBytes,
    shares: daemons.map((d) => ({ tag: d.share.tag, socketPath: d.socketPath })),
    consoleLogPath: config.consoleLogPath,
    consoleAppend: config.consoleAppend,
    control: config.control,
    network: config.network,
    qmpSocketPath
  });
  return { argv, daemons, qmpSocketPath };
}

// ../worker/src/vmm/qmp.ts
import { connect } from "node:net";
var QmpClient = class _QmpClient {
  events = [];
  socket;
  buffer = "";
  pending = [];
  listeners = /* @__PURE__ */ new Set();
  origin = performance.now();
  closedError;
  /** Connects and negotiates capabilities; rejects when the socket cannot be reached within `timeoutMs`. */
  static async connect(path, timeoutMs = 5e3, isAlive = () => true) {
    const client = new _QmpClient();
    const deadline = performance.now() + timeoutMs;
    for (; ; ) {
      try {
        await client.open(path);
        break;
      } catch (error) {
        if (performance.now() > deadline || !isAlive()) throw error;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    await client.execute("qmp_capabilities");
    return client;
  }
  open(path) {
    return new Promise((resolve2, reject) => {
      const socket = connect(path);
      let greeted = false;
      socket.setEncoding("utf8");
      socket.once("error", (error) => {
        if (!greeted) reject(error);
      });
      socket.on("data", (chunk) => {
        this.buffer += chunk;
        let newline;
        while ((newline = this.buffer.indexOf("\n")) >= 0) {
          const line = this.buffer.slice(0, newline).trim();
          this.buffer = this.buffer.slice(newline + 1);
          if (!line) continue;
          let message;
          try {
            message = JSON.parse(line);
          } catch {
            continue;
          }
          if (!greeted && "QMP" in message) {
            greeted = true;
            this.socket = socket;
            socket.on("error", () => void 0);
            socket.on("close", () => this.onClose());
            resolve2();
          } else if (typeof message.event === "string") {
            const event = { event: message.event, data: message.data, atMs: performance.now() - this.origin };
            this.events.push(event);
            for (const listener of this.listeners) listener(event);
          } else if ("return" in message || "error" in message) {
            const waiter = this.pending.shift();
            if (!waiter) continue;
            if ("error" in message) {
              const err = message.error;
              waiter.reject(new IiiError("QmpFailed", `QMP ${err.class ?? "error"}: ${err.desc ?? line}`));
            } else {
              waiter.resolve(message.return);
            }
          }
        }
      });
      socket.once("close", () => {
        if (!greeted) reject(new IiiError("QmpFailed", "QMP socket closed before the greeting"));
      });
    });
  }
  onClose() {
    this.closedError = new IiiError("QmpFailed", "QMP connection closed");
    for (const waiter of this.pending.splice(0)) waiter.reject(this.closedError);
  }
  execute(command, args) {
    if (!this.socket || this.closedError) return Promise.reject(this.closedError ?? new IiiError("QmpFailed", "QMP not connected"));
    return new Promise((resolve2, reject) => {
      this.pending.push({ resolve: resolve2, reject });
      this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}
`);
    });
  }
  onEvent(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  close() {
    this.socket?.destroy();
  }
};
function shutdownReason(events) {
  let reason;
  for (const event of events) {
    if (event.event === "GUEST_PANICKED") reason = "guest-panic";
    if (event.event === "SHUTDOWN") {
      const data = event.data;
      if (reason !== "guest-panic" || data?.reason !== "guest-reset") reason = data?.reason ?? "unknown";
    }
  }
  return reason;
}

// ../worker/src/vmm/qemu-vmm.ts
var MAX_SOCKET_PATH = 107;
var QemuVmm = class {
  kind = "qemu";
  config;
  timings = {};
  accelChoice;
  qemuBin;
  virtiofsdBin;
  argv;
  daemonCommands = [];
  daemons = [];
  qemu;
  qmp;
  exitPromise;
  exitInfo;
  failureError;
  failureReason;
  startedAt = 0;
  consoleOffset = 0;
  stopping = false;
  prepared = false;
  constructor(config) {
    this.config = config;
  }
  get qmpSocketPath() {
    return join7(this.config.runDir, "qmp.sock");
  }
  /** The accel in use (after prepare()). */
  get accel() {
    if (!this.accelChoice) throw new IiiError("Internal", "QemuVmm.prepare() has not run");
    return this.accelChoice;
  }
  /** `[qemu binary, ...argv]` (after prepare()). */
  get qemuCommand() {
    if (!this.argv || !this.qemuBin) throw new IiiError("Internal", "QemuVmm.prepare() has not run");
    return [this.qemuBin, ...this.argv];
  }
  get virtiofsdCommands() {
    return this.daemonCommands.map((d) => d.command);
  }
  /** The failure the adapter detected (KvmUnavailable, VmBootFailed), if any. */
  get failure() {
    return this.failureError;
  }
  /** The VM's end, once it has ended. */
  get exit() {
    return this.exitInfo;
  }
  async prepare() {
    if (this.prepared) return;
    const env = this.config.hostEnv ?? process.env;
    const { config } = this;
    this.qemuBin = config.qemuPath ?? findQemu(env);
    if (!this.qemuBin || !existsSync3(this.qemuBin)) {
      throw new IiiError("QemuNotFound", `${this.qemuBin ?? "qemu-system-x86_64"} not found (apt install qemu-system-x86, or set III_QEMU_BIN)`);
    }
    this.virtiofsdBin = config.virtiofsdPath ?? findVirtiofsd(env);
    if (!this.virtiofsdBin || !existsSync3(this.virtiofsdBin)) {
      throw new IiiError("VirtiofsdNotFound", `${this.virtiofsdBin ?? "virtiofsd"} not found (apt install qemu-system-common, or set III_VIRTIOFSD_BIN)`);
    }
    this.accelChoice = config.accelChoice ?? (config.accel ? { accel: config.accel, reason: "chosen by the caller" } : resolveAccel(env));
    if (!existsSync3(config.kernelPath)) throw new IiiError("FirmwareNotFound", `kernel ${config.kernelPath} does not exist`);
    if (!isDirectory(config.root.hostDir)) throw new IiiError("RootfsNotFound", `root filesystem ${config.root.hostDir} is not a directory`);
    const shares = [config.root, ...config.shares ?? []];
    const tags = /* @__PURE__ */ new Set();
    for (const share of shares) {
      validateTag(share.tag);
      if (tags.has(share.tag)) throw new IiiError("InvalidOption", `virtio-fs tag ${share.tag} is used twice`);
      tags.add(share.tag);
      if (share !== config.root && !isDirectory(share.hostDir)) throw new IiiError("InvalidOption", `shared directory ${share.hostDir} (${share.tag}) is not a directory`);
    }
    if (shares.some((s) => s.readOnly) && !which("unshare", ["/usr/bin", "/bin"], env)) {
      throw new IiiError("InvalidOption", "read-only shares need unshare(1) (apt install util-linux)");
    }
    try {
      mkdirSync2(config.runDir, { recursive: true });
      mkdirSync2(dirname4(config.consoleLogPath), { recursive: true });
    } catch (error) {
      throw new IiiError("HomeUnwritable", `cannot create ${config.runDir}: ${error.message}`, { cause: error });
    }
    const accel = this.accelChoice.accel;
    const commands = buildVmCommands(config, {
      accel,
      virtiofsdPath: this.virtiofsdBin,
      ...accel === "tcg" ? { tscKhz: config.tscKhz ?? hostTscKhz() } : {}
    });
    this.daemonCommands = commands.daemons;
    const sockets = [this.qmpSocketPath, ...this.daemonCommands.map((d) => d.socketPath), config.control?.socketPath, config.network?.socketPath];
    for (const path of sockets) {
      if (path && Buffer.byteLength(path) > MAX_SOCKET_PATH) {
        throw new IiiError("InvalidOption", `unix socket path ${path} is longer than ${MAX_SOCKET_PATH} bytes; use a shorter III_HOME or run dir`);
      }
    }
    this.argv = commands.argv;
    this.prepared = true;
  }
  async start() {
    await this.prepare();
    if (this.qemu) throw new IiiError("Internal", `VM ${this.config.name} was already started`);
    this.startedAt = performance.now();
    const timeoutMs = this.config.startTimeoutMs ?? 1e4;
    try {
      for (const path of [this.qmpSocketPath, ...this.daemonCommands.map((d) => d.socketPath)]) await rm3(path, { force: true });
      for (const daemon of this.daemonCommands) {
        const tracked = this.spawnTracked("virtiofsd", daemon.command, join7(this.config.runDir, `virtiofsd-${daemon.share.tag}.log`), daemon.share.tag);
        this.daemons.push(tracked);
      }
      await Promise.all(this.daemons.map((d, i) => this.waitForSocket(d, this.daemonCommands[i].socketPath, timeoutMs)));
      this.timings.virtiofsdReadyMs = this.elapsed();
      this.consoleOffset = this.config.consoleAppend ? fileSize(this.config.consoleLogPath) : 0;
      this.qemu = this.spawnTracked("qemu", this.qemuCommand, join7(this.config.runDir, "qemu.log"));
      this.timings.qemuSpawnedMs = this.elapsed();
      this.exitPromise = this.watchExit(this.qemu);
      try {
        this.qmp = await QmpClient.connect(this.qmpSocketPath, timeoutMs, () => !this.qemu.done);
      } catch (error) {
        await Promise.race([this.qemu.exited, delay(200)]);
        throw this.qemu.done ? this.startFailure("QEMU exited during start-up") : this.startFailure(`QMP did not answer: ${error.message}`);
      }
      this.timings.qmpReadyMs = this.elapsed();
      this.qmp.onEvent((event) => {
        if (event.event === "STOP" && !this.stopping) void this.checkInternalError();
      });
    } catch (error) {
      await this.killAll(1e3);
      throw error;
    }
  }
  /**
   * Waits for a console line (e.g. the first line of a test init); VmBootFailed with the console tail when
   * the VM ends or the time runs out first.
   */
  async waitForConsole(match, timeoutMs = 6e4) {
    try {
      const { line } = await waitForLine(this.config.consoleLogPath, match, {
        timeoutMs,
        fromOffset: this.consoleOffset,
        stop: () => this.failureError ? this.failureError.message : this.qemu?.done ? "ended" : void 0
      });
      return { line, atMs: this.elapsed() };
    } catch (error) {
      if (this.failureError) throw this.failureError;
      if (this.qemu?.done && this.exitPromise) {
        const exit = await this.exitPromise;
        if (this.failureError) throw this.failureError;
        throw this.bootFailure(`the VM ended (${exit.reason}) before the expected console line`);
      }
      throw this.bootFailure(error.message);
    }
  }
  wait() {
    if (!this.exitPromise) return Promise.reject(new IiiError("VmNotRunning", `VM ${this.config.name} was not started`));
    return this.exitPromise;
  }
  async stop(options = {}) {
    if (!this.qemu || !this.exitPromise) {
      await this.killAll(1e3);
      return { reason: "not-started", exitCode: null, signal: null, events: [], uptimeMs: 0 };
    }
    this.stopping = true;
    const timeoutMs = options.timeoutMs ?? 5e3;
    if (!this.qemu.done) {
      await Promise.race([this.qmp?.execute("quit").catch(() => void 0), delay(500)]);
      if (!await settlesWithin(this.qemu.exited, timeoutMs)) this.signal(this.qemu, "SIGTERM");
      if (!await settlesWithin(this.qemu.exited, 1e3)) this.signal(this.qemu, "SIGKILL");
    }
    const exit = await this.exitPromise;
    await this.killAll(1e3);
    return exit;
  }
  async cleanup() {
    if (this.qemu && !this.qemu.done) await this.stop({ timeoutMs: 2e3 });
    await this.killAll(1e3);
    this.qmp?.close();
    const created = [this.qmpSocketPath, ...this.daemonCommands.map((d) => d.socketPath)];
    if (this.config.control?.mode === "server") created.push(this.config.control.socketPath);
    await Promise.all(created.map((path) => rm3(path, { force: true })));
  }
  async [Symbol.asyncDispose]() {
    await this.cleanup();
  }
  processes() {
    return [...this.qemu ? [this.qemu] : [], ...this.daemons].filter((t) => !t.done).map((t) => t.record);
  }
  elapsed() {
    return performance.now() - this.startedAt;
  }
  spawnTracked(role, command, logPath, tag) {
    const logFd = openSync4(logPath, "w");
    let child;
    try {
      child = spawn(command[0], command.slice(1), { stdio: ["ignore", logFd, logFd] });
    } finally {
      closeSync4(logFd);
    }
    const exited = new Promise((resolve2) => {
      child.once("exit", (code, signal) => resolve2({ code, signal }));
      child.once("error", () => resolve2({ code: null, signal: null }));
    });
    const pid = child.pid ?? -1;
    const tracked = {
      record: { role, tag, pid, startTime: processStartTime(pid) ?? 0, argv: command },
      child,
      exited,
      done: false,
      logPath
    };
    void exited.then((exit) => {
      tracked.done = true;
      const failed = exit.signal !== null || exit.code !== 0;
      if (role !== "qemu" && failed && !this.stopping && this.qemu && !this.qemu.done) this.config.onDaemonExit?.(tracked.record, exit);
    });
    return tracked;
  }
  async waitForSocket(tracked, path, timeoutMs) {
    const deadline = performance.now() + timeoutMs;
    while (!isListening(path)) {
      if (tracked.done) {
        throw new IiiError("VmBootFailed", `VM ${this.config.name}: virtiofsd for ${tracked.record.tag} exited: ${lastLines(readTail(tracked.logPath), 5) || "no output"}`);
      }
      if (performance.now() > deadline) throw new IiiError("VmBootFailed", `VM ${this.config.name}: virtiofsd for ${tracked.record.tag} did not create ${path} within ${timeoutMs} ms`);
      await delay(2);
    }
  }
  async watchExit(qemu) {
    const { code, signal } = await qemu.exited;
    this.timings.exitedMs = this.elapsed();
    await delay(20);
    const events = this.qmp?.events ?? [];
    let reason = shutdownReason(events) ?? (signal ? `signal-${signal}` : "unknown");
    if (reason === "guest-reset" && /Kernel panic - not syncing/.test(readTail(this.config.consoleLogPath, 16 * 1024, this.consoleOffset))) reason = "guest-panic";
    if (!this.failureError && !this.stopping && (code !== 0 || signal !== null)) {
      this.failureError = this.qemuFailure(`QEMU ${signal ? `died of ${signal}` : `exited with code ${code}`}`);
      this.failureReason = "qemu-crashed";
    }
    if (this.failureError) reason = this.failureError.code === "KvmUnavailable" ? "kvm-failed" : this.failureReason ?? "qemu-crashed";
    this.exitInfo = {
      reason,
      exitCode: code,
      signal,
      events: events.map((e) => ({ ...e })),
      uptimeMs: performance.now() - this.startedAt,
      ...this.failureError ? { error: this.failureError } : {}
    };
    this.qmp?.close();
    void this.killAll(1e3);
    return this.exitInfo;
  }
  async checkInternalError() {
    const status = await this.qmp?.execute("query-status").catch(() => void 0);
    if (status?.status !== "internal-error") return;
    const log = lastLines(readTail(this.qemu.logPath), 8);
    this.failureError = this.accel.accel === "kvm" ? new IiiError("KvmUnavailable", `VM ${this.config.name}: KVM cannot run this guest (${this.accel.reason}): ${log || "internal error"}; use III_ACCEL=tcg`) : new IiiError("VmBootFailed", `VM ${this.config.name}: QEMU stopped with an internal error: ${log}`);
    this.failureReason = "internal-error";
    this.signal(this.qemu, "SIGKILL");
  }
  startFailure(what) {
    return this.qemuFailure(what);
  }
  /** KvmUnavailable when KVM was in use and QEMU's log blames it, else VmBootFailed; both quote QEMU's log. */
  qemuFailure(what) {
    const log = lastLines(readTail(this.qemu.logPath), 8);
    if (this.accel.accel === "kvm" && /kvm|MSR/i.test(log)) {
      return new IiiError("KvmUnavailable", `VM ${this.config.name}: KVM cannot run the guest (accel kvm: ${this.accel.reason}): ${log}; use III_ACCEL=tcg`);
    }
    return this.bootFailure(`${what}${log ? `: ${log}` : ""}`);
  }
  bootFailure(what) {
    const tail = consoleTail(this.config.consoleLogPath, 20, this.consoleOffset);
    return new IiiError("VmBootFailed", `VM ${this.config.name} failed to boot: ${what}${tail ? `
--- console tail ---
${tail}` : " (console is empty)"}`);
  }
  signal(tracked, signal) {
    if (tracked.done) return;
    try {
      tracked.child.kill(signal);
    } catch {
    }
  }
  /** SIGTERM every live process, SIGKILL what is left after `graceMs`. */
  async killAll(graceMs) {
    const live = [...this.qemu ? [this.qemu] : [], ...this.daemons].filter((t) => !t.done);
    for (const t of live) this.signal(t, "SIGTERM");
    await Promise.all(
      live.map(async (t) => {
        if (!await settlesWithin(t.exited, graceMs)) {
          this.signal(t, "SIGKILL");
          await t.exited;
        }
      })
    );
  }
};
function isListening(path) {
  if (!existsSync3(path)) return false;
  let table;
  try {
    table = readFileSync5("/proc/net/unix", "utf8");
  } catch {
    return true;
  }
  for (const line of table.split("\n")) {
    if (!line.endsWith(` ${path}`)) continue;
    const flags = line.trim().split(/\s+/)[3];
    if (flags && (Number.parseInt(flags, 16) & 65536) !== 0) return true;
  }
  return false;
}
function fileSize(path) {
  try {
    return statSync5(path).size;
  } catch {
    return 0;
  }
}
function isDirectory(path) {
  try {
    return statSync5(path).isDirectory();
  } catch {
    return false;
  }
}
function lastLines(text, n) {
  return text.split(/\r?\n/).filter((l) => l.trim()).slice(-n).join(" | ");
}
function delay(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
async function settlesWithin(promise, ms) {
  let timer;
  const timeout = new Promise((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// ../worker/bench/boot/raw-floor.ts
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
function buildBusyboxRootfs() {
  const script = fileURLToPath(new URL("../../test/fixtures/build-busybox-rootfs.sh", import.meta.url));
  return execFileSync("sh", [script], { encoding: "utf8" }).trim();
}

// ../worker/bench/net-vm/main.ts
var { values } = parseArgs({ options: { rounds: { type: "string", default: "3" }, seconds: { type: "string", default: "5" }, pings: { type: "string", default: "2000" } } });
var ROUNDS = Number(values.rounds);
var SECONDS = Number(values.seconds);
var PINGS = Number(values.pings);
var here = (p) => fileURLToPath2(new URL(p, import.meta.url));
var GUEST_MAC = "52:54:00:12:34:56";
for (const tool of ["iperf3", "gcc", "qemu-system-x86_64"]) {
  try {
    execFileSync2("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
  } catch {
    console.log(`SKIP net-vm bench: ${tool} not found`);
    process.exit(0);
  }
}
var work = mkdtempSync("/tmp/iii-netvm-");
var children = [];
var cleanup = () => {
  for (const c of children) c.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
};
for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]]) {
  process.on(sig, () => {
    cleanup();
    process.exit(128 + num);
  });
}
var startTied = (cmd, args) => {
  const c = spawn2("setpriv", ["--pdeathsig", "KILL", cmd, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(c);
  return c;
};
function installDynamic(root2, bin) {
  const paths = /* @__PURE__ */ new Set([bin]);
  for (const line of execFileSync2("ldd", [bin], { encoding: "utf8" }).split("\n")) {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) paths.add(m[1]);
  }
  for (const p of paths) {
    mkdirSync3(join8(root2, dirname5(p)), { recursive: true });
    copyFileSync(p, join8(root2, p));
    chmodSync(join8(root2, p), 493);
  }
}
function buildRootfs() {
  const root2 = join8(work, "root");
  cpSync(buildBusyboxRootfs(), root2, { recursive: true, verbatimSymlinks: true });
  installDynamic(root2, execFileSync2("sh", ["-c", "command -v iperf3"], { encoding: "utf8" }).trim());
  execFileSync2("gcc", ["-O2", "-static", "-o", join8(root2, "bin/rr"), here("./rr.c")]);
  mkdirSync3(join8(root2, "results"), { recursive: true });
  writeFileSync(
    join8(root2, "init.krun"),
    `#!/bin/busybox sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t tmpfs tmpfs /tmp
ip link set lo up
ip link set eth0 up
ip addr add $NET_ADDR dev eth0
ip route add default via $NET_GW
R=/results/$RUN
mkdir -p $R
echo netvm-up
# The virtio feature bits the guest driver negotiated (bit 0 CSUM, 1 GUEST_CSUM, 7/8 GUEST_TSO4/6, 11/12 HOST_TSO4/6).
cat /sys/class/net/eth0/device/features > $R/features.txt 2>&1
iperf3 -c $HOST -p $IPERF_PORT -t $SECS -J > $R/fwd.json 2>&1
iperf3 -c $HOST -p $IPERF_PORT -t $SECS -J -R > $R/rev.json 2>&1
rr $HOST $ECHO_PORT rtt $PINGS > $R/rtt.txt 2>&1
rr $HOST $ECHO_PORT conn $SECS > $R/conn.txt 2>&1
sync
echo netvm-done
reboot -f
`
  );
  chmodSync(join8(root2, "init.krun"), 493);
  return root2;
}
var { kernel } = await resolveKernel({});
var root = buildRootfs();
var iperfPort = 2e4 + process.pid % 2e4;
startTied("iperf3", ["-s", "-B", "127.0.0.1", "-p", String(iperfPort)]);
var servers = startTied(process.execPath, [fileURLToPath2(new URL("../../../network/bench/servers.mjs", import.meta.url))]);
var ports = JSON.parse((await once(servers.stdout, "data"))[0].toString());
await new Promise((r) => setTimeout(r, 300));
var userQemu = join8(work, "qemu-user-net.sh");
writeFileSync(userQemu, `#!/bin/sh
exec qemu-system-x86_64 "$@" -netdev user,id=n0,net=10.0.2.0/24 -device virtio-net-device,netdev=n0,mac=${GUEST_MAC}
`);
chmodSync(userQemu, 493);
var ipStr = (ip) => `${ip >>> 24}.${ip >>> 16 & 255}.${ip >>> 8 & 255}.${ip & 255}`;
async function runVm(mode, run) {
  const runDir = join8(work, `run-${run}`);
  mkdirSync3(runDir);
  let stack;
  let env;
  if (mode === "ours") {
    stack = new NetworkStack({ slot: 3, mtu: 1500, log: () => {
    }, policy: { hostPorts: [iperfPort, ports.echo] } });
    await stack.listen(join8(runDir, "net.sock"));
    const a = stack.addresses;
    const gw = ipStr(a.gatewayIp);
    env = { NET_ADDR: `${ipStr(a.guestIp)}/30`, NET_GW: gw, HOST: gw };
  } else {
    env = { NET_ADDR: "10.0.2.15/24", NET_GW: "10.0.2.2", HOST: "10.0.2.2" };
  }
  const mac = stack ? Array.from(stack.addresses.guestMac, (b) => b.toString(16).padStart(2, "0")).join(":") : GUEST_MAC;
  const vm = new QemuVmm({
    name: `netvm-${run}`,
    kernelPath: kernel.elfPath,
    root: { tag: "rootfs", hostDir: root },
    vcpus: 1,
    memoryBytes: 256 * 1024 * 1024,
    consoleLogPath: join8(runDir, "console.log"),
    runDir,
    env: { ...env, RUN: run, IPERF_PORT: String(iperfPort), ECHO_PORT: String(ports.echo), SECS: String(SECONDS), PINGS: String(PINGS) },
    ...stack ? { network: { socketPath: join8(runDir, "net.sock"), mac } } : { qemuPath: userQemu }
  });
  const cpu0 = process.cpuUsage();
  let retransmits = 0;
  let drops = 0;
  let dropReasons = "";
  try {
    await vm.start();
    await vm.waitForConsole((l) => l.includes("netvm-done"), 12e4 + SECONDS * 4e3);
    await vm.wait();
  } catch (err) {
    console.error(`  ${run}: ${err.message}; console:
${readFileSync6(join8(runDir, "console.log"), "utf8").slice(-2e3)}`);
  } finally {
    await vm.cleanup();
    if (stack) {
      retransmits = stack.counters.retransmits;
      drops = Object.values(stack.counters.drops).reduce((a, b) => a + b, 0);
      dropReasons = Object.entries(stack.counters.drops).map(([k, v]) => `${k} ${v}`).join(", ");
    }
    await stack?.close();
  }
  const cpu = process.cpuUsage(cpu0);
  const dir = join8(root, "results", run);
  const read = (f) => existsSync4(join8(dir, f)) ? readFileSync6(join8(dir, f), "utf8") : "";
  const iperf = (f) => {
    try {
      return JSON.parse(read(f)).end.sum_received.bits_per_second / 1e6;
    } catch {
      console.error(`  ${run}/${f}: ${read(f).slice(0, 300)}`);
      return Number.NaN;
    }
  };
  if (run.endsWith("-1")) {
    const bits = read("features.txt").trim();
    const on = (i) => bits[i] === "1";
    console.error(`  ${mode} virtio-net features: CSUM ${on(0)}, GUEST_CSUM ${on(1)}, GUEST_TSO4 ${on(7)}, HOST_TSO4 ${on(11)} (${bits.slice(0, 16)}\u2026)`);
  }
  return {
    fwdMbps: iperf("fwd.json"),
    revMbps: iperf("rev.json"),
    rttUs: Number(/rtt_us (\S+)/.exec(read("rtt.txt"))?.[1] ?? Number.NaN),
    connPerS: Number(/conn_per_s (\S+)/.exec(read("conn.txt"))?.[1] ?? Number.NaN),
    stackCpuS: (cpu.user + cpu.system) / 1e6,
    retransmits,
    drops,
    dropReasons
  };
}
var samples = { ours: [], user: [] };
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of round % 2 ? ["ours", "user"] : ["user", "ours"]) {
      const s = await runVm(mode, `${mode}-${round}`);
      samples[mode].push(s);
      console.error(`round ${round} ${mode.padEnd(4)}: guest->host ${s.fwdMbps.toFixed(0)} Mbit/s, host->guest ${s.revMbps.toFixed(0)} Mbit/s, round trip ${s.rttUs} us, ${s.connPerS} conn/s${mode === "ours" ? `, stack CPU ${s.stackCpuS.toFixed(2)} s, ${s.retransmits} retransmits, ${s.drops} drops (${s.dropReasons})` : ""}`);
    }
  }
} finally {
  cleanup();
}
var median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
var fmt = (v) => !Number.isFinite(v) ? "n/a" : v >= 100 ? v.toFixed(0) : v.toFixed(1);
var rows = [
  ["bulk guest->host (Mbit/s)", "fwdMbps", true],
  ["bulk host->guest (Mbit/s)", "revMbps", true],
  ["TCP round trip median (us)", "rttUs", false],
  ["TCP connections/s sequential", "connPerS", true]
];
console.log(`
TCG guest, 1 vCPU, MTU 1500, ${ROUNDS} interleaved round(s); ours = @iii/network via QEMU's stream netdev, qemu-user = -netdev user (slirp in QEMU)`);
console.log(["metric".padEnd(32), "ours".padStart(8), "qemu-user".padStart(10), "ratio min/med/max".padStart(20)].join("  "));
for (const [name, key, higher] of rows) {
  const ratios = samples.ours.map((o, i) => higher ? o[key] / samples.user[i][key] : samples.user[i][key] / o[key]);
  const r = [Math.min(...ratios), median(ratios), Math.max(...ratios)].map((x) => x.toFixed(2)).join("/");
  console.log([name.padEnd(32), fmt(median(samples.ours.map((s) => s[key]))).padStart(8), fmt(median(samples.user.map((s) => s[key]))).padStart(10), r.padStart(20)].join("  "));
}
console.log(`our stack's process CPU per VM run (median): ${median(samples.ours.map((s) => s.stackCpuS)).toFixed(2)} s (the guest's runs take ~${4 * SECONDS} s plus boot)`);
console.log("ratio > 1: ours is better (throughput/rate: ours/qemu-user; latency: qemu-user/ours).");
process.exit(0);
