import net from "node:net";
import { NetworkError } from "../errors.js";
import { HostSocketBridge } from "../proxy/host-bridge.js";
import type { PublishedPort } from "../stack/config.js";
import type { StackContext } from "../stack/context.js";
import type { TcpSocketSet } from "../stack/tcp-sockets.js";

/**
 * Published ports: a host connection on hostAddress:hostPort becomes a connection from the
 * gateway to guest:guestPort.
 */
export class PublishedPorts {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly ctx: StackContext,
    private readonly tcp: TcpSocketSet,
    private readonly ports: PublishedPort[],
  ) {}

  async listen(): Promise<void> {
    for (const p of this.ports) {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (sock) =>
        this.ctx.guard(() => this.open(sock, p.guestPort)),
      );
      this.servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once("error", (err) =>
          reject(new NetworkError("InvalidConfig", `cannot publish ${p.hostAddress ?? "127.0.0.1"}:${p.hostPort}`, { cause: err })),
        );
        server.listen(p.hostPort, p.hostAddress ?? "127.0.0.1", () => resolve());
      });
    }
  }

  private open(sock: net.Socket, guestPort: number): void {
    const ctx = this.ctx;
    if (ctx.closed || !ctx.out.connected || !ctx.tracker.canOpen("tcp")) {
      sock.resetAndDestroy();
      return;
    }
    const localPort = this.tcp.allocateInboundPort(guestPort);
    if (localPort === 0) {
      sock.resetAndDestroy();
      return;
    }
    this.sockets.add(sock);
    sock.once("close", () => this.sockets.delete(sock));
    sock.on("error", () => {});
    const bridge = new HostSocketBridge(sock, ctx.hostWrites, ctx.guard);
    bridge.attach(this.tcp.connect(localPort, guestPort, bridge));
  }

  /** Destroys the accepted sockets (call before the flows go) and closes the listeners. */
  destroySockets(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.servers.length = 0;
  }
}
