import dgram from "node:dgram";
import net from "node:net";
import type { DnsServerAddress } from "./resolv-conf.js";

interface UpstreamSocket {
  socket: dgram.Socket;
  /** Sends waiting for the connect to complete (dgram takes no address on a connecting socket). */
  queue: Array<{ msg: Buffer; fail: (err: Error) => void }> | undefined;
}

interface PendingQuery {
  server: DnsServerAddress;
  resolve(msg: Buffer): void;
  reject(err: Error): void;
  /** performance.now() after which the query times out. */
  deadline: number;
}

/**
 * Client for the upstream resolvers. UDP queries to one server are pipelined over one connected
 * socket, multiplexed by message id (thousands of queries cost one descriptor; a connected socket
 * skips the per-send address lookup and only hears that server); truncated answers are retried
 * over TCP.
 */
export class DnsUpstream {
  private readonly sockets = new Map<string, UpstreamSocket>();
  private readonly pending = new Map<number, PendingQuery>();
  private readonly tcpSockets = new Set<net.Socket>();
  private closed = false;
  /**
   * One timer for every pending UDP query: all share the same timeout, so deadlines come in the
   * order the queries were sent (the pending map's order), and the timer only ever waits for the
   * oldest one.
   */
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly timeoutMs: number) {}

  private socketFor(server: DnsServerAddress): UpstreamSocket {
    const key = `${server.host}:${server.port}`;
    const existing = this.sockets.get(key);
    if (existing) return existing;
    const s = dgram.createSocket("udp4");
    const entry: UpstreamSocket = { socket: s, queue: [] };
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
      if (!p || p.server.host !== rinfo.address || p.server.port !== rinfo.port) return;
      this.pending.delete(id);
      if (this.pending.size === 0) this.disarmTimer();
      p.resolve(msg);
    });
    s.on("error", (err) => {
      // Once connected, ICMP errors (port unreachable) surface here; pending queries time out and fall back.
      if (connected) return;
      // The connect itself failed (no route): the queued sends never leave, so fail them now.
      this.sockets.delete(key);
      s.close();
      for (const [id, p] of this.pending) {
        if (p.server.host !== server.host || p.server.port !== server.port) continue;
        this.pending.delete(id);
        p.reject(err);
      }
    });
    this.sockets.set(key, entry);
    return entry;
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
    const entry = this.socketFor(server);
    let id = (Math.random() * 0x10000) | 0;
    for (let i = 0; this.pending.has(id) && i < 0x10000; i++) id = (id + 1) & 0xffff;
    if (this.pending.has(id)) return Promise.reject(new Error("no free DNS message id"));
    const msg = Buffer.from(query);
    msg.writeUInt16BE(id, 0);
    return new Promise((resolve, reject) => {
      const p: PendingQuery = { server, resolve, reject, deadline: performance.now() + this.timeoutMs };
      this.pending.set(id, p);
      this.armTimer();
      this.sendOn(entry, msg, (err) => {
        if (this.pending.get(id) === p) {
          this.pending.delete(id);
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
      this.pending.delete(id);
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
          if (buf.length >= 2 + n) finish(undefined, buf.subarray(2, 2 + n));
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
    for (const p of this.pending.values()) p.reject(new Error("upstream closed"));
    this.pending.clear();
    for (const s of this.tcpSockets) s.destroy();
    this.tcpSockets.clear();
    for (const e of this.sockets.values()) e.socket.close();
    this.sockets.clear();
  }
}
