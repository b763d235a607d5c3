import { randomBytes } from "node:crypto";
import { constants, rmSync } from "node:fs";
import { access, lstat, open, readlink, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { errnoCode, IiiError } from "../errors.js";
import { withFileLock } from "../host/file-lock.js";
import { mkdirs } from "../host/mkdirs.js";

// yaml is bundled into dist (tsup.config.ts: its ES module build, one chunk): loaded through its ~40 CommonJS
// files it cost `start` 50-110 ms before the supervisor could get `go`; bundled it loads in ~10 ms.
import { type Document, isMap, isPair, isScalar, isSeq, parseDocument, type Scalar, type ScalarTag, stringify, visit } from "yaml";
import { decodeWorkersFile, encodeWorkersFile, type WorkerSpec, type WorkersFile, WrittenNumber } from "./model.js";

const HEADER = "# iii managed workers (written by iii-worker; edits are kept)\n";

/**
 * The most bytes read as a workers file: a project's file is a few KiB; a bigger one is a mistake (a log or a
 * dump saved under this name), refused before it is read whole into memory and parsed.
 */
export const WORKERS_FILE_MAX_BYTES = 16 * 2 ** 20;

/** The first line of a yaml error without its " at line L, column C:" tail (the position is printed once, before it). */
function yamlReason(message: string): string {
  const first = message.split("\n")[0]!.replace(/ at line \d+, column \d+:?\s*$/, "");
  // yaml's own advice names its API; the user's fix is one document per file.
  return /multiple documents/i.test(first) ? "it holds more than one YAML document (a '---' line); keep one" : first;
}

interface ParsedWorkersFile {
  file: WorkersFile;
  /** The parsed document, kept to write back the user's comments, order and unknown keys (undefined for no file). */
  document?: Document;
  /** Each worker as model.ts encodes it, taken before a change (updateWorkersFile). */
  oldEncoded?: Record<string, unknown>;
  /** The file's text as read: its byte order mark and line ends are kept by a rewrite (yaml drops both). */
  text?: string;
}

/** A number scalar whose text is not its value's (`0755`, `1.10`, `0x1F`, a 20-digit id). */
function isLossyNumber(node: Scalar): node is Scalar<number> & { source: string } {
  return typeof node.value === "number" && typeof node.source === "string" && node.source !== String(node.value);
}

/** `workers.api.env` for the ancestors yaml's visit gives (pairs by key, sequences by index). */
function yamlPath(ancestors: readonly unknown[], node: unknown): string {
  const parts: string[] = [];
  for (const [i, a] of ancestors.entries()) {
    if (isPair(a) && a.key !== node) parts.push(String(isScalar(a.key) ? a.key.value : a.key));
    else if (isSeq(a)) parts.push(`[${a.items.indexOf((ancestors[i + 1] ?? node) as never)}]`);
  }
  return parts.join(".").replace(/\.\[/g, "[") || "(top level)";
}

/**
 * The document's data, with each lossy number as a WrittenNumber (its text and value), so the decoder refuses it
 * where it expects text and takes its value where it expects a number. A lossy number as a key under `workers`
 * (a worker or env name) is refused here: a key there is always a name.
 */
function documentData(document: Document): unknown {
  const marked = document.clone();
  visit(marked, {
    Scalar(key, node, ancestors) {
      if (!isLossyNumber(node)) return;
      if (key === "key") {
        const at = yamlPath(ancestors, node);
        // only where the decoder reads keys: not the user's own x-… keys, nor top-level keys besides `workers`
        if (!/^workers(\.|$)/.test(at) || at.split(".").some((part) => part.startsWith("x-"))) return;
        throw new IiiError("StateFileCorrupt", `${at}: the key ${node.source} reads as the number ${node.value}; quote it ("${node.source}") to keep it as written`);
      }
      node.value = new WrittenNumber(node.source, node.value) as never;
    },
  });
  // yaml refuses an alias that would expand past 100 nodes (a "billion laughs" file) and one without its anchor
  return marked.toJS();
}

function parseWorkersYaml(text: string, path: string): ParsedWorkersFile {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  const first = document.errors[0];
  if (first) {
    const at = first.linePos?.[0];
    const where = at ? `line ${at.line}, column ${at.col}` : "unknown position";
    throw new IiiError("StateFileCorrupt", `${path} is not valid YAML (${where}): ${yamlReason(first.message)}`, {
      cause: first,
    });
  }
  // A warning is something yaml read without understanding (an unknown tag: `image: !!js/function "x"` loaded as
  // image x); refused like an unknown key.
  const warning = document.warnings[0];
  if (warning) {
    const at = warning.linePos?.[0];
    const where = at ? `line ${at.line}, column ${at.col}` : "unknown position";
    throw new IiiError("StateFileCorrupt", `${path} holds YAML iii does not understand (${where}): ${yamlReason(warning.message)}`, { cause: warning });
  }
  let raw: unknown;
  try {
    raw = documentData(document);
  } catch (error) {
    if (error instanceof IiiError) throw new IiiError("StateFileCorrupt", `${path}: ${error.message}`, { cause: error });
    throw new IiiError("StateFileCorrupt", `${path} is not valid YAML: ${yamlReason((error as Error).message)}`, { cause: error });
  }
  try {
    return { file: decodeWorkersFile(raw), document, text };
  } catch (error) {
    if (error instanceof IiiError) {
      throw new IiiError("StateFileCorrupt", `${path}: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

/**
 * The text of the file at `path`, undefined if there is none. Opened without blocking and checked on the open
 * descriptor: a FIFO at the name would block a plain read forever (every command hung), a directory or a device
 * is refused by name. Bytes that are not UTF-8 are refused, not read as U+FFFD and written back replaced.
 */
async function readWorkersText(path: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return undefined;
    throw new IiiError("StateFileUnreadable", `cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new IiiError("StateFileUnreadable", `${path} is ${fileKind(st)}, not a regular file: move it away`);
    if (st.size > WORKERS_FILE_MAX_BYTES) {
      throw new IiiError("StateFileCorrupt", `${path} is ${st.size} bytes, more than a workers file may be (${WORKERS_FILE_MAX_BYTES}): is it the right file?`);
    }
    let bytes: Buffer;
    try {
      bytes = await fh.readFile();
    } catch (error) {
      throw new IiiError("StateFileUnreadable", `cannot read ${path}: ${(error as Error).message}`, { cause: error });
    }
    try {
      return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch (error) {
      throw new IiiError("StateFileCorrupt", `${path} is not UTF-8 text (an invalid byte on line ${firstInvalidUtf8Line(bytes)}); save it as UTF-8`, { cause: error });
    }
  } finally {
    await fh.close();
  }
}

function fileKind(st: { isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice() || st.isBlockDevice()) return "a device";
  return "not a file";
}

/** The 1-based line holding the first byte that is not UTF-8 (no UTF-8 sequence holds a newline byte). */
function firstInvalidUtf8Line(bytes: Buffer): number {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let line = 1;
  for (let start = 0; start <= bytes.length; line++) {
    const end = bytes.indexOf(0x0a, start);
    const stop = end < 0 ? bytes.length : end;
    try {
      decoder.decode(bytes.subarray(start, stop));
    } catch {
      return line;
    }
    if (end < 0) break;
    start = end + 1;
  }
  return line;
}

async function readWorkersFile(path: string): Promise<ParsedWorkersFile> {
  const text = await readWorkersText(path);
  return text === undefined ? { file: { workers: {} } } : parseWorkersYaml(text, path);
}

/** Reads `iii.workers.yaml`. A missing file is an empty one; a corrupt one is an error, never replaced. */
export async function loadWorkersFile(path: string): Promise<WorkersFile> {
  return (await readWorkersFile(path)).file;
}

export function serializeWorkersFile(file: WorkersFile): string {
  return HEADER + stringify(encodeWorkersFile(file), { lineWidth: 0 });
}

/** The mode of the regular file at `path`, undefined if there is none; refuses a link or anything else. */
async function existingFileMode(path: string): Promise<number | undefined> {
  try {
    const st = await lstat(path);
    if (st.isSymbolicLink()) {
      const target = await readlink(path).catch(() => "?");
      throw new IiiError("StateFileUnwritable", `${path} is a symbolic link (to ${target}); refusing to write through it (remove the link)`);
    }
    if (!st.isFile()) throw new IiiError("StateFileUnwritable", `${path} is not a regular file`);
    return st.mode & 0o7777;
  } catch (error) {
    if (error instanceof IiiError) throw error;
    if (errnoCode(error) === "ENOENT") return undefined;
    throw new IiiError("StateFileUnwritable", `cannot write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** One worker's entry as written (model.ts's encoding), to tell which entries a change touched. */
function encodedWorker(name: string, spec: WorkerSpec): unknown {
  return (encodeWorkersFile({ workers: { [name]: spec } }) as { workers: Record<string, unknown> }).workers[name];
}

/**
 * The text to write after a change: the user's document with only the entries the change touched replaced,
 * added or deleted, so comments, key order, formatting and keys iii does not know stay as they were (the header
 * says "edits are kept"). The result is read back; if it does not say what the change meant (an alias into a
 * deleted entry, say), the file is written in iii's own form instead, and `dropped` says so.
 */
export function serializeWorkersChange(before: ParsedWorkersFile, after: WorkersFile): { text: string; dropped?: string } {
  const change = serializeChangedDocument(before, after);
  return { ...change, text: withLineEndsOf(before.text, change.text) };
}

/**
 * `text` (yaml's output: LF, no byte order mark) with the byte order mark and line ends of the file it replaces:
 * the first `add` turned a Windows user's CRLF file into LF on every line and dropped its BOM.
 */
function withLineEndsOf(original: string | undefined, text: string): string {
  if (original === undefined) return text;
  const bom = original.startsWith("\uFEFF") ? "\uFEFF" : "";
  const firstBreak = /\r?\n/.exec(original)?.[0];
  return bom + (firstBreak === "\r\n" ? text.replace(/\r?\n/g, "\r\n") : text);
}

/**
 * yaml writes a number from its value, so an entry the change did not touch came back changed (`0x1F90` as
 * `0x1f90`, `+5` as `5`, `1e3` as `1000`). Each plain number read from the file (a node made for the change has no
 * source) is given a format whose tag writes its text as read; a tag found by format, default so no `!!int` is added.
 */
const NUMBER_AS_WRITTEN: ScalarTag = {
  tag: "tag:yaml.org,2002:int",
  format: "AS-WRITTEN",
  default: true,
  identify: (value) => typeof value === "number",
  test: /(?!)/, // never chosen to read a scalar
  resolve: (text) => Number(text),
  stringify: (node) => (node as Scalar).source!,
};

function keepNumbersAsWritten(document: Document): void {
  // the clone's schema has its own tag list (Schema.clone), the parsed document's is left as it was
  document.schema.tags.push(NUMBER_AS_WRITTEN);
  visit(document, {
    Scalar(_, node) {
      if (typeof node.value === "number" && typeof node.source === "string" && node.type === "PLAIN" && node.tag === undefined) node.format = "AS-WRITTEN";
    },
  });
}

function serializeChangedDocument(before: ParsedWorkersFile, after: WorkersFile): { text: string; dropped?: string } {
  const { document } = before;
  if (!document) return { text: serializeWorkersFile(after) };
  const canonical = JSON.stringify(encodeWorkersFile(after));
  let reason: string;
  try {
    const edited = document.clone();
    const old = before.oldEncoded!;
    if (!isMap(edited.get("workers", true))) edited.set("workers", edited.createNode({}));
    const workers = edited.get("workers", true);
    for (const name of Object.keys(old)) if (!Object.hasOwn(after.workers, name)) edited.deleteIn(["workers", name]);
    for (const [name, spec] of Object.entries(after.workers)) {
      const encoded = encodedWorker(name, spec);
      if (Object.hasOwn(old, name) && JSON.stringify(old[name]) === JSON.stringify(encoded)) continue;
      // a new entry in `workers: {}` would otherwise be written inline, as one long flow line
      if (isMap(workers)) workers.flow = false;
      edited.setIn(["workers", name], edited.createNode(encoded));
    }
    keepNumbersAsWritten(edited);
    // flow collections as most people write them (`[a, b]`), not yaml's default `[ a, b ]`
    const text = edited.toString({ lineWidth: 0, flowCollectionPadding: false });
    const check = parseWorkersYaml(text, "(edited)").file;
    if (JSON.stringify(encodeWorkersFile(check)) === canonical) return { text };
    reason = "the edited file did not read back as the change";
  } catch (error) {
    reason = (error as Error).message.split("\n")[0]!;
  }
  return { text: serializeWorkersFile(after), dropped: reason };
}

/**
 * Temp file + fsync + rename, never through a symbolic link: the file lives in a project directory,
 * which a worker (`iii worker dev` mounts the project read-write) may write, so a link planted at its
 * name is refused rather than followed to whatever it points at; the rename replaces a name, so one
 * swapped in after the check is replaced, not written through. An existing file keeps its mode.
 */
async function writeAtomically(path: string, text: string): Promise<void> {
  // A new file is 0666 less the umask, as any file the user makes: it holds `--env` values, and a fixed 0644 made it
  // readable by every local user under `umask 077` (review rev6i).
  const existing = await existingFileMode(path);
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  const leave = enterWrite();
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, existing ?? 0o666);
    try {
      await fh.writeFile(text);
      if (existing !== undefined) await fh.chmod(existing);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (signalledToEnd()) throw new Error(`interrupted by ${deferredSignal}`);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw new IiiError("StateFileUnwritable", `cannot write ${path}: ${(error as Error).message}`, { cause: error });
  } finally {
    leave();
  }
}

const CLEANUP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
let writesInFlight = 0;
let deferredSignal: NodeJS.Signals | undefined;
let listening = false;

/**
 * Ctrl-C (SIGINT), SIGTERM or SIGHUP during a write waits for it to end, then ends the process as the signal would
 * have (its default action, status 128+n): each one that landed mid-write left an `iii.workers.yaml.<hex>.tmp` in
 * the user's project (removing it from the handler raced the open still under way in Node's thread pool, which
 * then created it). A write signalled before its rename is abandoned, so the file stays as it was. A command that
 * handles the signal itself (its own listener) still does, and its write completes.
 * The listener stays once added: one removed as a write ends would drop a signal Node had just caught, and the
 * process would go on as if never signalled.
 */
function onCleanupSignal(signal: NodeJS.Signals): void {
  if (writesInFlight > 0) {
    deferredSignal ??= signal;
    return;
  }
  reraise(signal);
}

function reraise(signal: NodeJS.Signals): void {
  for (const s of CLEANUP_SIGNALS) process.off(s, onCleanupSignal);
  listening = false;
  // with no other listener Node has restored the default action: the signal now ends the process
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

/** Whether a signal that arrived during this write will end the process (then the write is abandoned). */
function signalledToEnd(): boolean {
  return deferredSignal !== undefined && process.listenerCount(deferredSignal) === 1;
}

function enterWrite(): () => void {
  writesInFlight += 1;
  if (!listening) {
    listening = true;
    for (const signal of CLEANUP_SIGNALS) process.on(signal, onCleanupSignal);
  }
  return () => {
    writesInFlight -= 1;
    const signal = deferredSignal;
    if (writesInFlight === 0 && signal) {
      deferredSignal = undefined;
      reraise(signal);
    }
  };
}

/** The mode of the file at `path` (undefined if none) when a write may replace it; else one line why not. */
async function writableFileMode(path: string): Promise<number | undefined> {
  const mode = await existingFileMode(path);
  // The rename would replace a file the user made read-only (chmod a-w) as if it were writable.
  if (mode !== undefined && (mode & 0o222) === 0) {
    throw new IiiError("StateFileUnwritable", `${path} is read-only (mode ${mode.toString(8).padStart(4, "0")}); make it writable (chmod u+w) for iii-worker to change it`);
  }
  return mode;
}

/**
 * Refuses, before anything else happens, a state file that updateWorkersFile could not replace: a link, no regular
 * file, read-only, or a directory where no temp file can be created (read-only file system, no permission).
 * `remove` checks this first: it deleted the worker's data, then failed to write the file, and the worker stayed
 * listed with its data gone.
 */
export async function assertWorkersFileWritable(path: string): Promise<void> {
  await writableFileMode(path);
  try {
    await access(dirname(path), constants.W_OK);
  } catch (error) {
    throw new IiiError("StateFileUnwritable", `cannot write ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Read-modify-write of the state file under an exclusive flock on `<file>.lock`, written with temp file +
 * fsync + rename, so concurrent processes never lose an update and a crash never leaves a torn file.
 * `change` may throw to abort; nothing is written then.
 */
export async function updateWorkersFile<T>(path: string, change: (file: WorkersFile) => T | Promise<T>): Promise<T> {
  await mkdirs(dirname(path));
  return withFileLock(`${path}.lock`, async () => {
    await writableFileMode(path);
    const before = await readWorkersFile(path);
    before.oldEncoded = Object.fromEntries(Object.entries(before.file.workers).map(([name, spec]) => [name, encodedWorker(name, spec)]));
    const result = await change(before.file);
    const { text, dropped } = serializeWorkersChange(before, before.file);
    await writeAtomically(path, text);
    if (dropped) process.stderr.write(`iii-worker: note: ${path} was rewritten in iii's own layout, without its comments and unknown keys (${dropped})\n`);
    return result;
  });
}
