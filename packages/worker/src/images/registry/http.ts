import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { connect as netConnect, isIP, type LookupFunction, type Socket } from "node:net";
import type { ConnectionOptions, TLSSocket } from "node:tls";
import { proxyFor } from "./proxy.js";

/**
 * A small HTTP/1.1 client for registry traffic (manifests, blobs, tokens), on `node:net`/`node:tls` instead of
 * `fetch`. Measured on the images bench: fetch (undici, with its WebAssembly HTTP parser) cost ~12 MB to load and
 * allocated a fresh Buffer per chunk read, which piled up as 40-60 MB of garbage during a pull. Here plain-HTTP
 * sockets read into ONE shared buffer (`onread`), the body goes to a synchronous sink as views of it, and nothing
 * per chunk outlives the callback. One request per connection (`Connection: close`), GET only; Content-Length,
 * chunked and close-delimited bodies; redirects; proxies from the environment (CONNECT tunnels for https,
 * absolute-form requests for http, as undici's EnvHttpProxyAgent did); TLS with Node's CA store (bundled +
 * NODE_EXTRA_CA_CERTS, the OS store with --use-system-ca).
 */

export type HttpErrorCode =
  | "HttpConnectFailed"
  | "HttpTimeout"
  | "HttpTls"
  | "HttpProtocol"
  | "HttpTruncated"
  | "HttpRedirect"
  | "HttpTooLarge"
  | "HttpProxy"
  | "HttpInvalidRequest";

/** A failure of one exchange. `transient`: a retry may succeed (connection refused or reset, timeout, cut body). */
export class HttpError extends Error {
  constructor(
    readonly code: HttpErrorCode,
    message: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "HttpError";
  }
}

export interface HttpRequestOptions {
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** No response head within this long, or no byte for this long once the body flows (default 60 s). */
  timeoutMs?: number;
  /** Redirects followed (default 10). */
  maxRedirects?: number;
  /** Where HTTPS_PROXY/HTTP_PROXY/NO_PROXY are read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Certificates trusted instead of Node's default store (a private CA). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Called with every redirect's target before it is fetched: returns why it is refused, or undefined. */
  refuseRedirect?: (to: URL) => string | undefined;
  /**
   * Called with every address a host name of the request chain resolved to, before a direct connection to it (a
   * proxy resolves names itself): returns why it is refused, or undefined. Catches a name that merely resolves to a
   * place `refuseRedirect` refuses by its spelling (the machine's own host name is 127.0.0.1 on many systems).
   */
  refuseAddress?: (url: URL, address: string) => string | undefined;
}

const READ_BUFFER = 64 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Every plain-HTTP socket reads into this: libuv fills it and the callback consumes it before the next read. */
let shared: Buffer | undefined;

type Sink = (chunk: Buffer) => void;
type BodyMode = "none" | "length" | "chunked" | "close";

/** A response whose head has arrived; the body is read by exactly one of pipe / bytes / cancel. */
export class HttpResponse {
  constructor(
    readonly status: number,
    readonly statusText: string,
    /** Lower-case names; repeated headers joined with ", ". */
    readonly headers: Map<string, string>,
    readonly url: URL,
    private readonly exchange: Exchange,
  ) {}

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  /**
   * Streams the body to `sink`, which must consume each chunk before returning (it is a view of a reused
   * buffer). Resolves with the body's length once it ended as framed; a connection closed early is HttpTruncated.
   */
  pipe(sink: Sink): Promise<number> {
    return this.exchange.pipe(sink);
  }

  /** The whole body, refused beyond `limit` bytes. */
  async bytes(limit: number): Promise<Buffer> {
    const declared = this.headers.get("content-length");
    if (declared !== undefined && Number(declared) > limit) {
      this.cancel();
      throw new HttpError("HttpTooLarge", `${this.url.origin}${this.url.pathname}: body of ${declared} bytes is larger than ${limit}`, false);
    }
    const parts: Buffer[] = [];
    let size = 0;
    await this.pipe((chunk) => {
      size += chunk.length;
      if (size > limit) throw new HttpError("HttpTooLarge", `${this.url.origin}${this.url.pathname}: body is larger than ${limit} bytes`, false);
      parts.push(Buffer.from(chunk));
    });
    return Buffer.concat(parts, size);
  }

  async json(limit: number): Promise<unknown> {
    const body = await this.bytes(limit);
    try {
      return JSON.parse(body.toString("utf8")) as unknown;
    } catch (error) {
      throw new HttpError("HttpProtocol", `${this.url.origin}${this.url.pathname}: body is not JSON`, false, { cause: error });
    }
  }

  /** Drops the body and the connection. */
  cancel(): void {
    this.exchange.close();
  }
}

interface Head {
  status: number;
  statusText: string;
  headers: Map<string, string>;
}

/** One request on one connection: writes the request, parses the head, then frames the body for one sink. */
class Exchange {
  private socket: Socket | undefined;
  private state: "head" | "paused" | "body" | "done" = "head";
  private head: Buffer = Buffer.alloc(0);
  /** Body bytes that arrived with the head, kept (copied) until a sink attaches. */
  private early: Buffer | undefined;
  private mode: BodyMode = "none";
  private remaining = 0;
  private received = 0;
  private chunkState: "size" | "data" | "data-end" | "trailer" = "size";
  private line = "";
  private sink: Sink | undefined;
  private headWaiter: { resolve: (head: Head) => void; reject: (error: unknown) => void } | undefined;
  private bodyWaiter: { resolve: (n: number) => void; reject: (error: unknown) => void } | undefined;
  private failure: unknown;
  private headTimer: NodeJS.Timeout | undefined;
  /** Aborted by fail(): ends a connect, TLS handshake or CONNECT that is still under way, and its socket. */
  private readonly connecting = new AbortController();
  /** Trailer bytes after the last chunk, bounded like a head. */
  private trailerBytes = 0;
  private readonly onAbort = () => this.fail(this.options.signal!.reason);
  /** The same callback for `onread` and 'data'; returning false pauses an `onread` socket. */
  readonly onData = (chunk: Buffer): boolean => this.receive(chunk);

  constructor(
    readonly url: URL,
    private readonly options: HttpRequestOptions,
    private readonly timeoutMs: number,
  ) {}

  async start(): Promise<Head> {
    const signal = this.options.signal;
    signal?.throwIfAborted();
    requestHead(this.url, this.options.headers ?? {}, false); // refuses unsendable headers before connecting
    signal?.addEventListener("abort", this.onAbort, { once: true });
    const head = new Promise<Head>((resolve, reject) => (this.headWaiter = { resolve, reject }));
    // A timeout or abort can reject `head` while the connection is still being opened, before the caller holds
    // it: without a handler now, that rejection would count as unhandled (and end the process).
    head.catch(() => {});
    this.headTimer = setTimeout(() => this.fail(new HttpError("HttpTimeout", `no response from ${this.url.origin} within ${this.timeoutMs} ms`, true)), this.timeoutMs);
    try {
      const { socket, absoluteForm, proxyAuthorization } = await openConnection(this.url, this.options, this.onData, this.connecting.signal);
      if (this.state === "done") {
        socket.destroy();
        throw this.failure;
      }
      this.socket = socket;
      socket.on("error", (error) => this.fail(classifySocketError(error, this.url)));
      socket.on("close", () => this.closed());
      socket.on("end", () => this.closed());
      socket.on("timeout", () => this.fail(new HttpError("HttpTimeout", `no data from ${this.url.origin} for ${this.timeoutMs} ms`, true)));
      socket.setTimeout(this.timeoutMs);
      const headers = proxyAuthorization ? { ...this.options.headers, "proxy-authorization": proxyAuthorization } : (this.options.headers ?? {});
      socket.write(requestHead(this.url, headers, absoluteForm));
    } catch (error) {
      this.fail(error);
    }
    return head;
  }

  private receive(chunk: Buffer): boolean {
    try {
      if (this.state === "head") {
        this.head = this.head.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.head, chunk]);
        this.parseHead();
        return (this.state as string) !== "paused";
      }
      if (this.state === "body") this.feed(chunk);
    } catch (error) {
      this.fail(error);
    }
    return this.state !== "done";
  }

  private parseHead(): void {
    for (;;) {
      const end = this.head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (this.head.length > MAX_HEAD_BYTES) throw this.protocol(`response head larger than ${MAX_HEAD_BYTES} bytes`);
        return;
      }
      const lines = this.head.subarray(0, end).toString("latin1").split("\r\n");
      const rest = this.head.subarray(end + 4);
      const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]!);
      if (!status) throw this.protocol(`malformed status line ${JSON.stringify(lines[0]!.slice(0, 80))}`);
      const code = Number(status[1]);
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) throw this.protocol(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
        const name = line.slice(0, colon).toLowerCase();
        const value = line.slice(colon + 1).trim();
        const previous = headers.get(name);
        headers.set(name, previous === undefined ? value : `${previous}, ${value}`);
      }
      if (code >= 100 && code < 200) {
        // 100 Continue and friends: the real head follows.
        this.head = Buffer.from(rest);
        continue;
      }
      this.frame(code, headers);
      this.head = Buffer.alloc(0);
      if (this.headTimer) clearTimeout(this.headTimer);
      // Wait for a sink: no reads (and no idle timer) until the caller asks for the body.
      this.socket?.pause();
      this.socket?.setTimeout(0);
      this.early = rest.length > 0 ? rest : undefined;
      this.state = this.mode === "none" ? "done" : "paused";
      this.headWaiter?.resolve({ status: code, statusText: status[2] ?? "", headers });
      this.headWaiter = undefined;
      if (this.state === "done") this.release();
      return;
    }
  }

  private frame(code: number, headers: Map<string, string>): void {
    const encoding = headers.get("transfer-encoding");
    const length = headers.get("content-length");
    if (code === 204 || code === 304) {
      this.mode = "none";
    } else if (encoding !== undefined) {
      if (encoding.toLowerCase() !== "chunked") throw this.protocol(`unsupported transfer-encoding "${encoding}"`);
      this.mode = "chunked";
    } else if (length !== undefined) {
      const values = new Set(length.split(",").map((v) => v.trim()));
      const [only] = values;
      if (values.size !== 1 || !/^\d{1,15}$/.test(only!)) throw this.protocol(`invalid content-length "${length}"`);
      this.remaining = Number(only);
      this.mode = this.remaining === 0 ? "none" : "length";
    } else {
      this.mode = "close";
    }
  }

  pipe(sink: Sink): Promise<number> {
    if (this.sink || this.bodyWaiter) return Promise.reject(new HttpError("HttpInvalidRequest", "the body was already read", false));
    if (this.state === "done") return this.failure !== undefined ? Promise.reject(this.failure) : Promise.resolve(0);
    const body = new Promise<number>((resolve, reject) => (this.bodyWaiter = { resolve, reject }));
    this.sink = sink;
    this.state = "body";
    const early = this.early;
    this.early = undefined;
    if (early) this.receive(early);
    if (this.state === "body") {
      this.socket?.setTimeout(this.timeoutMs);
      this.socket?.resume();
    }
    return body;
  }

  /** Frames body bytes: hands data to the sink, consumes chunked framing. */
  private feed(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && this.state === "body") {
      if (this.mode === "close") {
        this.deliver(chunk.subarray(at));
        return;
      }
      if (this.mode === "length") {
        at = this.take(chunk, at);
        if (this.remaining === 0) this.finish();
        continue;
      }
      // chunked
      if (this.chunkState === "data") {
        at = this.take(chunk, at);
        if (this.remaining === 0) this.chunkState = "data-end";
        continue;
      }
      const newline = chunk.indexOf(10, at);
      const end = newline < 0 ? chunk.length : newline + 1;
      this.line += chunk.toString("latin1", at, end);
      if (this.chunkState === "trailer") {
        this.trailerBytes += end - at;
        if (this.trailerBytes > MAX_HEAD_BYTES) throw this.protocol(`chunked trailer larger than ${MAX_HEAD_BYTES} bytes`);
      }
      at = end;
      if (this.line.length > 4096) throw this.protocol("chunk framing line too long");
      if (newline < 0) continue;
      const line = this.line.replace(/\r?\n$/, "");
      this.line = "";
      if (this.chunkState === "data-end") {
        if (line !== "") throw this.protocol("missing CRLF after a chunk");
        this.chunkState = "size";
      } else if (this.chunkState === "size") {
        const size = /^([0-9a-fA-F]{1,12})(?:\s*;.*)?$/.exec(line);
        if (!size) throw this.protocol(`invalid chunk size line ${JSON.stringify(line.slice(0, 40))}`);
        this.remaining = parseInt(size[1]!, 16);
        this.chunkState = this.remaining === 0 ? "trailer" : "data";
      } else if (line === "") {
        this.finish();
      }
    }
  }

  /** Delivers up to `remaining` body bytes of `chunk` from `at`; returns where they end. */
  private take(chunk: Buffer, at: number): number {
    const n = Math.min(this.remaining, chunk.length - at);
    this.remaining -= n;
    this.deliver(chunk.subarray(at, at + n));
    return at + n;
  }

  private deliver(data: Buffer): void {
    if (data.length === 0) return;
    this.received += data.length;
    this.sink!(data);
  }

  private finish(): void {
    if (this.state === "done") return;
    this.state = "done";
    this.bodyWaiter?.resolve(this.received);
    this.bodyWaiter = undefined;
    this.release();
  }

  /** The peer closed the connection (or ended its side). */
  private closed(): void {
    if (this.state === "done") return;
    if (this.state === "body" && this.mode === "close") {
      this.finish();
      return;
    }
    const where = this.state === "head" ? "before a complete response head" : `after ${this.received} body bytes`;
    this.fail(new HttpError("HttpTruncated", `${this.url.origin} closed the connection ${where}`, true));
  }

  close(): void {
    if (this.state === "done") return;
    this.state = "done";
    this.bodyWaiter?.resolve(this.received);
    this.bodyWaiter = undefined;
    this.release();
  }

  private fail(error: unknown): void {
    if (this.state === "done") return;
    this.state = "done";
    this.failure = error;
    this.connecting.abort(error);
    this.headWaiter?.reject(error);
    this.bodyWaiter?.reject(error);
    this.headWaiter = undefined;
    this.bodyWaiter = undefined;
    this.release();
  }

  private release(): void {
    if (this.headTimer) clearTimeout(this.headTimer);
    this.options.signal?.removeEventListener("abort", this.onAbort);
    this.socket?.destroy();
    this.sink = undefined;
    this.early = undefined;
  }

  private protocol(message: string): HttpError {
    return new HttpError("HttpProtocol", `${this.url.origin}: ${message}`, false);
  }
}

function requestHead(url: URL, headers: Record<string, string>, absoluteForm: boolean): string {
  const target = absoluteForm ? `${url.origin}${url.pathname}${url.search}` : `${url.pathname}${url.search}`;
  let head = `GET ${target} HTTP/1.1\r\nhost: ${url.host}\r\nconnection: close\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[\w!#$%&'*+.^`|~-]+$/.test(name) || /[\r\n\0]/.test(value)) {
      throw new HttpError("HttpInvalidRequest", `header ${JSON.stringify(name)} has a name or value that cannot be sent`, false);
    }
    const lower = name.toLowerCase();
    if (lower === "host" || lower === "connection") continue;
    head += `${name}: ${value}\r\n`;
  }
  return `${head}\r\n`;
}

/**
 * Whether `hostname` (as in a URL: IPv6 in brackets) names this machine or its link: `localhost`, loopback,
 * unspecified and link-local addresses (the cloud metadata service is 169.254.169.254). Names that merely resolve
 * there are not recognised here, from the URL alone: `refuseAddress` checks what a name resolved to.
 */
export function isLocalHostname(hostname: string): boolean {
  let host = hostname.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host) ?? /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mapped) {
    host = mapped.length === 2 ? mapped[1]! : [parseInt(mapped[1]!, 16) >> 8, parseInt(mapped[1]!, 16) & 255, parseInt(mapped[2]!, 16) >> 8, parseInt(mapped[2]!, 16) & 255].join(".");
  }
  const version = isIP(host);
  if (version === 4) {
    const [a, b] = host.split(".").map(Number) as [number, number];
    return a === 127 || a === 0 || (a === 169 && b === 254);
  }
  if (version === 6) {
    return host === "::1" || host === "::" || /^fe[89ab][0-9a-f]:/.test(host);
  }
  return false;
}

function portOf(url: URL): number {
  return Number(url.port) || (url.protocol === "https:" ? 443 : 80);
}

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, "");
}

/** A DNS lookup for net/tls connect that fails when `refuse` refuses any address the name resolved to. */
function guardedLookup(url: URL, refuse: (url: URL, address: string) => string | undefined): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
      if (error) return callback(error, "", 0);
      for (const { address } of addresses) {
        const why = refuse(url, address);
        if (why !== undefined) return callback(new HttpError("HttpRedirect", `${url.origin}: ${hostname} resolves to ${address}: ${why}`, false), "", 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
      const first = addresses[0]!;
      callback(null, first.address, first.family);
    });
  };
}

/** A plain TCP connection; with `onData`, its reads land in the shared buffer. */
function tcp(host: string, port: number, signal: AbortSignal, onData?: (chunk: Buffer) => boolean, lookup?: LookupFunction): Promise<Socket> {
  return new Promise((resolve, reject) => {
    signal.throwIfAborted();
    shared ??= Buffer.allocUnsafe(READ_BUFFER);
    const socket = netConnect({
      host,
      port,
      noDelay: true,
      ...(lookup ? { lookup } : {}),
      ...(onData ? { onread: { buffer: shared, callback: (n: number, buffer: Buffer) => onData(buffer.subarray(0, n)) } } : {}),
    });
    const failed = (error: Error) => reject(error);
    const cancel = untilSettled(signal, socket, reject);
    socket.once("error", failed);
    socket.once("connect", () => {
      socket.off("error", failed);
      cancel();
      resolve(socket);
    });
  });
}

/** Until the returned function is called, an abort of `signal` destroys `socket` and rejects with its reason. */
function untilSettled(signal: AbortSignal, socket: Socket, reject: (error: unknown) => void): () => void {
  const onAbort = () => {
    socket.destroy();
    reject(signal.reason);
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

function tlsWrap(options: ConnectionOptions, url: URL, signal: AbortSignal, onData: (chunk: Buffer) => boolean): Promise<TLSSocket> {
  return import("node:tls").then(
    ({ connect }) =>
      new Promise<TLSSocket>((resolve, reject) => {
        signal.throwIfAborted();
        const host = hostOf(url);
        const socket = connect({
          ...options,
          // The name the certificate must carry: always the URL's host. Over a proxy's tunnel Node would otherwise
          // check an IP-literal registry's certificate against the proxy's own name.
          host,
          ...(isIP(host) ? {} : { servername: host }),
          ALPNProtocols: ["http/1.1"],
        });
        const failed = (error: Error) => reject(error);
        const cancel = untilSettled(signal, socket, reject);
        socket.once("error", failed);
        socket.once("secureConnect", () => {
          socket.off("error", failed);
          cancel();
          socket.on("data", (chunk: Buffer) => {
            if (!onData(chunk)) socket.pause();
          });
          resolve(socket);
        });
      }),
  );
}

/** Opens the connection a request to `url` travels on: direct, or through the environment's proxy. */
async function openConnection(
  url: URL,
  options: HttpRequestOptions,
  onData: (chunk: Buffer) => boolean,
  signal: AbortSignal,
): Promise<{ socket: Socket; absoluteForm: boolean; proxyAuthorization?: string }> {
  const host = hostOf(url);
  const port = portOf(url);
  const ca = options.ca !== undefined ? { ca: options.ca } : {};
  const proxy = proxyFor(url, options.env ?? process.env);
  try {
    if (!proxy) {
      const lookup = options.refuseAddress ? guardedLookup(url, options.refuseAddress) : undefined;
      if (url.protocol === "http:") return { socket: await tcp(host, port, signal, onData, lookup), absoluteForm: false };
      return { socket: await tlsWrap({ host, port, ...ca, ...(lookup ? { lookup } : {}) }, url, signal, onData), absoluteForm: false };
    }
    if (proxy.protocol !== "http:" && proxy.protocol !== "https:") {
      throw new HttpError("HttpProxy", `proxy ${proxy.origin}: only http:// and https:// proxies are supported`, false);
    }
    const credentials = proxy.username
      ? `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString("base64")}`
      : undefined;
    if (url.protocol === "http:" && proxy.protocol === "http:") {
      // Plain HTTP goes to the proxy as an absolute-form request, its credentials in the request's head.
      const socket = await tcp(hostOf(proxy), portOf(proxy), signal, onData);
      return { socket, absoluteForm: true, ...(credentials ? { proxyAuthorization: credentials } : {}) };
    }
    const authorization = credentials ? `proxy-authorization: ${credentials}\r\n` : "";
    const toProxy =
      proxy.protocol === "http:"
        ? await tcp(hostOf(proxy), portOf(proxy), signal)
        : await tlsWrap({ host: hostOf(proxy), port: portOf(proxy) }, proxy, signal, () => true);
    // url.hostname keeps an IPv6 literal's brackets; url.host would drop a default port.
    const tunnel = await connectTunnel(toProxy, `${url.hostname}:${port}`, authorization, proxy, signal);
    if (url.protocol === "http:") {
      tunnel.on("data", (chunk: Buffer) => {
        if (!onData(chunk)) tunnel.pause();
      });
      return { socket: tunnel, absoluteForm: false };
    }
    return { socket: await tlsWrap({ socket: tunnel, ...ca }, url, signal, onData), absoluteForm: false };
  } catch (error) {
    if (error instanceof HttpError || signal.aborted) throw error;
    throw classifySocketError(error as Error, url, proxy);
  }
}

/** CONNECT host:port through a proxy; resolves with the socket once the proxy answered 2xx. */
function connectTunnel(socket: Socket, authority: string, authorization: string, proxy: URL, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const cancel = untilSettled(signal, socket, reject);
    let head = Buffer.alloc(0);
    socket.removeAllListeners("data");
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) {
        if (head.length > MAX_HEAD_BYTES) done(new HttpError("HttpProxy", `proxy ${proxy.origin}: response to CONNECT too large`, false));
        return;
      }
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head.toString("latin1", 0, end));
      if (!status || !status[1]!.startsWith("2")) {
        done(new HttpError("HttpProxy", `proxy ${proxy.origin} refused CONNECT ${authority}: ${head.toString("latin1", 0, Math.min(end, head.indexOf("\r\n"))) || "no status"}`, false));
        return;
      }
      if (end + 4 < head.length) socket.unshift(head.subarray(end + 4));
      done();
    };
    const onError = (error: Error) => done(error);
    const onClose = () => done(new HttpError("HttpProxy", `proxy ${proxy.origin} closed the connection during CONNECT ${authority}`, true));
    const done = (error?: Error) => {
      cancel();
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      if (error) {
        socket.destroy();
        reject(error);
      } else {
        // Nothing arrives before the client speaks (TLS and HTTP both start with the client), so no byte is lost
        // between this listener going and the next one coming.
        resolve(socket);
      }
    };
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nhost: ${authority}\r\n${authorization}\r\n`);
  });
}

function classifySocketError(error: Error, url: URL, proxy?: URL): HttpError {
  const code = (error as { code?: unknown }).code;
  const text = typeof code === "string" ? code : "";
  const via = proxy ? ` (via proxy ${proxy.origin})` : "";
  if (text.startsWith("ERR_SSL") || text.startsWith("ERR_TLS") || text === "EPROTO" || text.includes("CERT") || text === "DEPTH_ZERO_SELF_SIGNED_CERT" || text === "UNABLE_TO_VERIFY_LEAF_SIGNATURE") {
    return new HttpError("HttpTls", `TLS with ${url.origin}${via} failed (${text}): ${error.message}`, false, { cause: error });
  }
  return new HttpError("HttpConnectFailed", `connection to ${url.origin}${via} failed: ${text || error.message}`, true, { cause: error });
}

/**
 * GET `url`, following redirects: 301/302/303/307/308 with a Location (absolute or relative). Registries send
 * blob downloads to storage on another host; the Authorization header goes only to the origin it was meant for,
 * and https never redirects down to plain http.
 */
export async function httpGet(url: string | URL, options: HttpRequestOptions = {}): Promise<HttpResponse> {
  let current = typeof url === "string" ? new URL(url) : url;
  const origin = current.origin;
  let headers = { ...options.headers };
  const maxRedirects = options.maxRedirects ?? 10;
  const timeoutMs = options.timeoutMs ?? 60_000;
  for (let hop = 0; ; hop++) {
    if (current.protocol !== "http:" && current.protocol !== "https:") {
      throw new HttpError("HttpInvalidRequest", `${current.href}: only http and https URLs can be fetched`, false);
    }
    const exchange = new Exchange(current, { ...options, headers }, timeoutMs);
    const head = await exchange.start();
    const response = new HttpResponse(head.status, head.statusText, head.headers, current, exchange);
    const location = head.headers.get("location");
    if (!REDIRECTS.has(head.status) || location === undefined) return response;
    response.cancel();
    if (hop >= maxRedirects) throw new HttpError("HttpRedirect", `${url.toString()}: more than ${maxRedirects} redirects`, false);
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new HttpError("HttpRedirect", `${current.origin}: redirect to an invalid location ${JSON.stringify(location.slice(0, 200))}`, false);
    }
    if (current.protocol === "https:" && next.protocol !== "https:") {
      throw new HttpError("HttpRedirect", `${current.origin}: refusing a redirect from https to ${next.protocol}//${next.host}`, false);
    }
    const refused = options.refuseRedirect?.(next);
    if (refused !== undefined) throw new HttpError("HttpRedirect", `${current.origin}: refusing a redirect to ${next.origin}: ${refused}`, false);
    if (next.origin !== origin) {
      headers = Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== "authorization"));
    }
    current = next;
  }
}
