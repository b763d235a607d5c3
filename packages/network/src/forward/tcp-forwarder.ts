import net from "node:net";
import { DnsTcpSession } from "../dns/dns-tcp-session.js";
import { HostSocketBridge } from "../proxy/host-bridge.js";
import type { StackContext } from "../stack/context.js";
import { countDrop } from "../stack/counters.js";
import type { ConnectionRequest } from "../stack/tcp-sockets.js";

/** DNS-over-TCP sessions one guest may hold open at once (a resolver uses one or two). */
const MAX_DNS_TCP_SESSIONS = 8;

/**
 * Turns the guest's connection requests into host connections: DNS over TCP is answered by the
 * interceptor; everything else passes the egress policy, then is dialled (connect-then-accept:
 * the guest gets SYN-ACK only once the host connection exists, RST if it is refused, ICMP
 * unreachable if it cannot be reached or times out).
 */
export class TcpForwarder {
  /** DNS-over-TCP sessions open now (each may hold ~1 MiB of answers; see dns-tcp-session.ts). */
  private dnsSessions = 0;

  constructor(private readonly ctx: StackContext) {}

  readonly forward = (req: ConnectionRequest): void => {
    const ctx = this.ctx;
    if (req.remotePort === 53) {
      if (this.dnsSessions >= MAX_DNS_TCP_SESSIONS) {
        countDrop(ctx.counters, "dns-tcp-sessions");
        req.reset();
        return;
      }
      this.dnsSessions++;
      const session = new DnsTcpSession(ctx.dns, ctx.guard, () => this.dnsSessions--);
      session.conn = req.complete(session);
      return;
    }
    const d = ctx.policy.decide("tcp", req.remoteIp, req.remotePort, ctx.addresses.gatewayIp);
    if (!d.allowed) {
      ctx.deny("tcp", req.guestPort, req.remoteIp, req.remotePort, d.rule);
      req.reset();
      return;
    }
    this.dial(req, d.dialHost, d.dialPort);
  };

  private dial(req: ConnectionRequest, host: string, port: number): void {
    const ctx = this.ctx;
    const sock = net.connect({ host, port, noDelay: true, allowHalfOpen: true });
    let timer: NodeJS.Timeout | undefined;
    let verdict: NodeJS.Immediate | undefined;
    const stopTimer = () => {
      if (timer) clearTimeout(timer);
      if (verdict) clearImmediate(verdict);
      timer = undefined;
      verdict = undefined;
    };
    const release = () => {
      stopTimer();
      sock.destroy();
    };
    req.hold(release);
    const fail = (kind: "refused" | "unreachable" | "net-unreachable") => {
      release();
      if (!req.live) return;
      if (kind === "refused") req.reset();
      else req.unreachable(kind === "net-unreachable");
    };
    // After the event loop was held up (a starved process, a long synchronous step), Node runs expired timers
    // before it polls for I/O: a connection that completed meanwhile would be declared timed out. The check phase
    // comes after the poll, so the verdict waits one turn for it.
    timer = setTimeout(() => {
      timer = undefined;
      verdict = setImmediate(() =>
        ctx.guard(() => {
          verdict = undefined;
          ctx.log(`tcp: connect to ${host}:${port} timed out after ${ctx.limits.connectTimeoutMs} ms`);
          fail("unreachable");
        }),
      );
    }, ctx.limits.connectTimeoutMs);
    const onError = (err: NodeJS.ErrnoException) =>
      ctx.guard(() => {
        if (err.code === "ECONNREFUSED") fail("refused");
        else if (err.code === "ENETUNREACH") fail("net-unreachable");
        else if (err.code === "EHOSTUNREACH" || err.code === "ETIMEDOUT") fail("unreachable");
        else fail("refused");
      });
    sock.once("error", onError);
    sock.once("connect", () =>
      ctx.guard(() => {
        sock.off("error", onError);
        stopTimer();
        if (!req.live) {
          sock.destroy();
          return;
        }
        sock.pause();
        const bridge = new HostSocketBridge(sock, ctx.hostWrites, ctx.guard);
        bridge.attach(req.complete(bridge));
      }),
    );
  }
}
