import dgram from "node:dgram";
import { randomInt } from "node:crypto";
import net from "node:net";
import { answersQuestion } from "./dns-wire.js";
import type { DnsServerAddress } from "./resolv-conf.js";

interface UpstreamSocket {
  socket: dgram.Socket;
  /** Sends waiting for the connect to complete (dgram takes no address on a connecting socket). */
  queue: Array<{ msg: Buffer; fail: (err: Error) => void }> | undefined;
  /** Queries sent on it so far, and those still waiting for their answer. */
  sent: number;
  pending: number;
  /** Replaced by a fresh socket: closed once its last pending query is done. */
  retired: boolean;
}

interface PendingQuery {
  server: DnsServerAddress;
  /** The socket it went out on: only an answer arriving there counts. */
  entry: UpstreamSocket;
  /** The message as sent (upstream id): the answer's question must be its question. */
  sent: Buffer;
  resolve(msg: Buffer): void;
  reject(err: Error): void;
  /** performance.now() after which the query times out. */
  deadline: number;
}

export interface DnsUpstreamOptions {
  /** Connected UDP sockets per server, used in turn (default 1). */
  socketsPerServer?: number;
  /** Queries a socket sends before a fresh one (a new random port) takes its place (default 256). */
  queriesPerSocket?: number;
}

/**
 * Client for the upstream resolvers. UDP queries to one server are pipelined over a connected
 * socket, multiplexed by message id, each query with a fresh random id. Against off-path answer
 * spoofing (RFC 5452) the source port changes too: the socket is replaced by a new one after
 * `queriesPerSocket` queries (the old one stays open until its last answer is in), and every
 * socket's port is the kernel's random ephemeral pick (Linux randomises UDP autobind ports). A pool
 * of sockets used in turn (`socketsPerServer`) would add log2(n) bits per query but splits libuv's
 * per-wakeup read batch n ways; four cost ~10 % more CPU per query in the DNS bench, so the default
 * is one socket, rotated every 256 queries. An answer only
 * counts when it comes from that server, on the socket the query left on, with the query's id and
 * question (name, type, class); anything else is ignored and the query keeps waiting. Truncated
 * answers are retried over TCP, checked the same way.
 */
export class DnsUpstream {
  private readonly pools = new Map<string, { sockets: Array<UpstreamSocket | undefined>; next: number }>();
  private readonly pending = new Map<number, PendingQuery>();
  private readonly tcpSockets = new Set<net.Socket>();
  private closed = false;
  private readonly socketsPerServer: number;
  private readonly queriesPerSocket: number;
  /** Sockets opened so far (for tests and diagnostics). */
  socketsOpened = 0;
  /**
   * One timer for every pending UDP query: all share the same timeout, so deadlines come in the
   * order the queries were sent (the pending map's order), and the timer only ever waits for the
   * oldest one.
   */
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    options: DnsUpstreamOptions = {},
  ) {
    this.socketsPerServer = Math.max(1, options.socketsPerServer ?? 1);
    this.queriesPerSocket = Math.max(1, options.queriesPerSocket ?? 256);
  }

  /** The socket for the next query to `server`: the pool's next one, replaced when it has sent its share. */
  private socketFor(server: DnsServerAddress): UpstreamSocket {
    const key = `${server.host}:${server.port}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = { sockets: [], next: 0 };
      this.pools.set(key, pool);
    }
    const i = pool.next;
    pool.next = (i + 1) % this.socketsPerServer;
    let entry = pool.sockets[i];
    if (entry && entry.sent >= this.queriesPerSocket) {
      this.retire(entry);
      entry = undefined;
    }
    if (!entry) {
      entry = this.open(server, pool.sockets, i);
      pool.sockets[i] = entry;
    }
    entry.sent++;
    return entry;
  }

  private open(server: DnsServerAddress, slots: Array<UpstreamSocket | undefined>, slot: number): UpstreamSocket {
    const s = dgram.createSocket("udp4");
    this.socketsOpened++;
    const entry: UpstreamSocket = { socket: s, queue: [], sent: 0, pending: 0, retired: false };
    let connected = false;
    s.connect(server.port, server.host, () => {
      connected = true;
      const queued = entry.queue ?? [];
      entry.queue = undefined;
      for (const q of queued) this.sendOn(entry, q.msg, q.fail);
    });
    s.on("message", (msg, rinfo) => {
      if (msg.length < 12) return;
      const id = msg.readUInt16BE(0);
      const p = this.pending.get(id);
      if (!p || p.entry !== entry || p.server.host !== rinfo.address || p.server.port !== rinfo.port) return;
      if (!answersQuestion(p.sent, msg)) return;
      this.settle(id, p);
      p.resolve(msg);
    });
    s.on("error", (err) => {
      // Once connected, ICMP errors (port unreachable) surface here; pending queries time out and fall back.
      if (connected) return;
      // The connect itself failed (no route): the queued sends never leave, so fail them now.
      if (slots[slot] === entry) slots[slot] = undefined;
      entry.retired = true;
      for (const [id, p] of this.pending) {
        if (p.entry !== entry) continue;
        this.settle(id, p);
        p.reject(err);
      }
      this.closeIfDone(entry);
    });
    return entry;
  }

  /** A pending query is answered, failed or timed out. */
  private settle(id: number, p: PendingQuery): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.disarmTimer();
    p.entry.pending--;
    this.closeIfDone(p.entry);
  }

  private retire(entry: UpstreamSocket): void {
    entry.retired = true;
    this.closeIfDone(entry);
  }

  private closeIfDone(entry: UpstreamSocket): void {
    if (!entry.retired || entry.pending > 0) return;
    try {
      entry.socket.close();
    } catch {
      // already closed
    }
  }

  private sendOn(entry: UpstreamSocket, msg: Buffer, fail: (err: Error) => void): void {
    if (entry.queue) {
      entry.queue.push({ msg, fail });
      return;
    }
    entry.socket.send(msg, (err) => {
      if (err) fail(err);
    });
  }

  /** Sends `query` (its id is replaced) and resolves with the upstream answer carrying the original id. */
  async query(server: DnsServerAddress, query: Buffer): Promise<Buffer> {
    const originalId = query.readUInt16BE(0);
    let answer = await this.udpQuery(server, query);
    if (answer.length >= 4 && answer[2]! & 0x02) answer = await this.tcpQuery(server, query);
    // The answer is this client's own buffer (a received datagram, or the TCP reply assembled here).
    answer.writeUInt16BE(originalId, 0);
    return answer;
  }

  private udpQuery(server: DnsServerAddress, query: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error("upstream closed"));
    let id = randomInt(0x10000);
    for (let i = 0; this.pending.has(id) && i < 0x10000; i++) id = (id + 1) & 0xffff;
    if (this.pending.has(id)) return Promise.reject(new Error("no free DNS message id"));
    const entry = this.socketFor(server);
    const msg = Buffer.from(query);
    msg.writeUInt16BE(id, 0);
    return new Promise((resolve, reject) => {
      const p: PendingQuery = { server, entry, sent: msg, resolve, reject, deadline: performance.now() + this.timeoutMs };
      this.pending.set(id, p);
      entry.pending++;
      this.armTimer();
      this.sendOn(entry, msg, (err) => {
        if (this.pending.get(id) === p) {
          this.settle(id, p);
          reject(err);
        }
      });
    });
  }

  /** Nothing pending: no timer left behind (an idle stack holds none). */
  private disarmTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private armTimer(): void {
    if (this.timer || this.pending.size === 0) return;
    const oldest = this.pending.values().next().value!;
    this.timer = setTimeout(this.expire, Math.max(0, oldest.deadline - performance.now()));
  }

  /** Fails the queries whose deadline has passed (the oldest first), then waits for the next one. */
  private readonly expire = (): void => {
    this.timer = undefined;
    // A timer can fire a little early by the clock read here; 1 ms of slack avoids a spin.
    const now = performance.now() + 1;
    for (const [id, p] of this.pending) {
      if (p.deadline > now) break;
      this.settle(id, p);
      p.reject(new Error(`timeout from ${p.server.host}:${p.server.port}`));
    }
    this.armTimer();
  };

  private tcpQuery(server: DnsServerAddress, query: Buffer): Promise<Buffer> {
    if (this.closed) return Promise.reject(new Error("upstream closed"));
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: server.host, port: server.port, noDelay: true });
      this.tcpSockets.add(sock);
      let buf = Buffer.alloc(0);
      let done = false;
      const finish = (err: Error | undefined, msg?: Buffer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        this.tcpSockets.delete(sock);
        if (err) reject(err);
        else resolve(msg!);
      };
      const timer = setTimeout(() => finish(new Error(`TCP timeout from ${server.host}:${server.port}`)), this.timeoutMs);
      sock.on("connect", () => {
        const len = Buffer.allocUnsafe(2);
        len.writeUInt16BE(query.length, 0);
        sock.write(Buffer.concat([len, query]));
      });
      sock.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2) {
          const n = buf.readUInt16BE(0);
          if (buf.length < 2 + n) return;
          const msg = buf.subarray(2, 2 + n);
          if (n < 12 || msg.readUInt16BE(0) !== query.readUInt16BE(0) || !answersQuestion(query, msg)) {
            finish(new Error(`TCP answer from ${server.host}:${server.port} does not answer the query`));
          } else {
            finish(undefined, msg);
          }
        }
      });
      sock.on("error", (err) => finish(err));
      sock.on("close", () => finish(new Error("upstream closed the TCP connection")));
    });
  }

  get inFlight(): number {
    return this.pending.size + this.tcpSockets.size;
  }

  close(): void {
    this.closed = true;
    this.disarmTimer();
    const entries = new Set<UpstreamSocket>();
    for (const p of this.pending.values()) {
      entries.add(p.entry);
      p.reject(new Error("upstream closed"));
    }
    this.pending.clear();
    for (const s of this.tcpSockets) s.destroy();
    this.tcpSockets.clear();
    for (const pool of this.pools.values()) for (const e of pool.sockets) if (e) entries.add(e);
    this.pools.clear();
    for (const e of entries) {
      e.pending = 0;
      this.retire(e);
    }
  }
}
