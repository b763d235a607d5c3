import { describe, expect, test } from "vitest";
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpOptions, type TcpSegment } from "../wire/tcp.js";
import { type OutgoingSegment, type TcpCloseReason, TcpConnection, type TimerHost } from "./tcp-connection.js";

class FakeTimers implements TimerHost {
  t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private id = 0;
  now = () => this.t;
  set = (fn: () => void, ms: number) => {
    this.timers.set(++this.id, { at: this.t + ms, fn });
    return this.id;
  };
  clear = (h: unknown) => {
    this.timers.delete(h as number);
  };
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

interface Sent extends OutgoingSegment {
  data: Buffer;
}

function setup(opts: { window?: number; options?: TcpOptions; rcvBuf?: number; appBuffered?: () => number } = {}) {
  const timers = new FakeTimers();
  const out: Sent[] = [];
  const delivered: Buffer[] = [];
  const events: string[] = [];
  let closed: TcpCloseReason | undefined;
  const acks = new Set<TcpConnection>();
  const hooks = {
    emit: (c: TcpConnection, s: OutgoingSegment) => {
      const data = Buffer.alloc(s.dataLength);
      if (s.dataLength) c.copySendData(s.dataOffset, s.dataLength, data, 0);
      out.push({ ...s, data });
    },
    deliver: (d: Buffer) => delivered.push(d),
    deliverEnd: () => events.push("end"),
    appBuffered: opts.appBuffered ?? (() => 0),
    onSendSpace: () => events.push("space"),
    onEstablished: () => events.push("established"),
    onClosed: (r: TcpCloseReason) => {
      closed = r;
    },
    requestAck: (c: TcpConnection) => acks.add(c),
  };
  const cfg = { localPort: 80, remotePort: 5555, iss: 1_000_000, mss: 1460, receiveBufferBytes: opts.rcvBuf ?? 65536 * 4, sendHighWaterBytes: 512 * 1024, timeWaitMs: 1000, maxRetries: 5 };
  const seg = (o: Partial<TcpSegment> & { seq: number; flags: number }): TcpSegment => ({
    srcPort: 5555,
    dstPort: 80,
    ack: 0,
    window: opts.window ?? 65535,
    options: {},
    payload: new Uint8Array(0),
    ...o,
  });
  const syn = seg({ seq: 500, flags: TCP_SYN, options: opts.options ?? { mss: 1460, windowScale: 2, sackPermitted: true } });
  const conn = TcpConnection.accept(syn, cfg, hooks, timers);
  return { conn, out, delivered, events, timers, seg, acks, closed: () => closed, cfg, hooks };
}

function establish(s: ReturnType<typeof setup>) {
  s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK }));
  s.out.length = 0;
}

describe("TcpConnection", () => {
  test("passive open answers with SYN-ACK carrying MSS, window scale and SACK-permitted", () => {
    const s = setup();
    expect(s.out[0]).toMatchObject({ seq: 1_000_000, ack: 501, flags: TCP_SYN | TCP_ACK, options: { mss: 1460, windowScale: 7, sackPermitted: true } });
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK }));
    expect(s.conn.state).toBe("ESTABLISHED");
    expect(s.events).toEqual(["established"]);
  });

  test("no window scale is offered to a guest that did not offer it", () => {
    const s = setup({ options: { mss: 536 } });
    expect(s.out[0]!.options).toEqual({ mss: 1460 });
  });

  test("a retransmitted SYN gets the SYN-ACK again; the SYN-ACK is retransmitted on timeout", () => {
    const s = setup();
    s.conn.segmentArrived(s.seg({ seq: 500, flags: TCP_SYN }));
    expect(s.out.filter((o) => o.flags === (TCP_SYN | TCP_ACK))).toHaveLength(2);
    s.timers.advance(1000);
    expect(s.out.filter((o) => o.flags === (TCP_SYN | TCP_ACK))).toHaveLength(3);
  });

  test("in-order data is delivered and acknowledged once per burst", () => {
    const s = setup();
    establish(s);
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK, payload: Buffer.from("abc") }));
    s.conn.segmentArrived(s.seg({ seq: 504, ack: 1_000_001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from("def") }));
    expect(Buffer.concat(s.delivered).toString()).toBe("abcdef");
    expect(s.out).toHaveLength(0);
    expect(s.acks.has(s.conn)).toBe(true);
    s.conn.flushAck();
    expect(s.out).toHaveLength(1);
    expect(s.out[0]).toMatchObject({ ack: 507, flags: TCP_ACK });
  });

  test("out-of-order and overlapping segments are reassembled; SACK reports the hole", () => {
    const s = setup();
    establish(s);
    s.conn.segmentArrived(s.seg({ seq: 504, ack: 1_000_001, flags: TCP_ACK, payload: Buffer.from("def") }));
    expect(s.delivered).toHaveLength(0);
    expect(s.out[0]).toMatchObject({ ack: 501, options: { sackBlocks: [[504, 507]] } });
    s.conn.segmentArrived(s.seg({ seq: 506, ack: 1_000_001, flags: TCP_ACK, payload: Buffer.from("fgh") }));
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK, payload: Buffer.from("abcd") }));
    expect(Buffer.concat(s.delivered).toString()).toBe("abcdefgh");
    expect(s.out.at(-1)).toMatchObject({ ack: 509 });
    // A full duplicate is re-acknowledged, not delivered again.
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK, payload: Buffer.from("abc") }));
    expect(Buffer.concat(s.delivered).toString()).toBe("abcdefgh");
    expect(s.out.at(-1)).toMatchObject({ ack: 509 });
  });

  test("sends no more than the guest's (scaled) window and continues when it opens", () => {
    const s = setup({ window: 1095 }); // scaled by 2^2 after the handshake: 4380 bytes = 3 segments
    establish(s);
    s.conn.send(Buffer.alloc(30_000, 1));
    const sent = () => s.out.reduce((n, o) => n + o.dataLength, 0);
    expect(sent()).toBe(4380);
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001 + 4380, flags: TCP_ACK, window: 3650 })); // 14600 = 10 segments
    expect(sent()).toBe(4380 + 14600);
  });

  test("zero window: nothing is sent, a probe goes out on the timer, data resumes on a window update", () => {
    const s = setup({ window: 0 });
    establish(s);
    s.conn.send(Buffer.from("hello"));
    expect(s.out).toHaveLength(0);
    s.timers.advance(1000);
    expect(s.out[0]).toMatchObject({ seq: 1_000_000, flags: TCP_ACK, dataLength: 0 });
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK, window: 100 }));
    expect(s.out.at(-1)?.data.toString()).toBe("hello");
  });

  test("retransmits from SND.UNA on timeout and accepts a late ACK for data sent before the rewind", () => {
    const s = setup();
    establish(s);
    s.conn.send(Buffer.alloc(5000, 7));
    expect(s.out.map((o) => o.seq)).toEqual([1_000_001, 1_000_001 + 1460, 1_000_001 + 2920, 1_000_001 + 4380]);
    s.timers.advance(1000);
    expect(s.out.at(-1)).toMatchObject({ seq: 1_000_001, dataLength: 1460 });
    // The original transmissions arrive after all: the ACK covers more than SND.NXT after the rewind.
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001 + 5000, flags: TCP_ACK }));
    expect(s.conn.sendBuffered).toBe(0);
    expect(s.conn.bytesToGuest).toBe(5000);
  });

  test("three duplicate ACKs trigger a fast retransmit", () => {
    const s = setup();
    establish(s);
    s.conn.send(Buffer.alloc(6000, 7));
    const n = s.out.length;
    for (let i = 0; i < 3; i++) s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK, window: 65535 }));
    expect(s.out.length).toBe(n + 1);
    expect(s.out.at(-1)).toMatchObject({ seq: 1_000_001 });
  });

  test("guest half-close: FIN is delivered as end, our data keeps flowing, then LAST_ACK -> CLOSED", () => {
    const s = setup();
    establish(s);
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK | TCP_FIN, payload: Buffer.from("req") }));
    expect(s.events).toContain("end");
    expect(s.conn.state).toBe("CLOSE_WAIT");
    s.conn.send(Buffer.from("response"));
    expect(s.out.at(-1)?.data.toString()).toBe("response");
    s.conn.end();
    expect(s.conn.state).toBe("LAST_ACK");
    const fin = s.out.at(-1)!;
    expect(fin.flags & TCP_FIN).toBeTruthy();
    s.conn.segmentArrived(s.seg({ seq: 505, ack: 1_000_001 + 8 + 1, flags: TCP_ACK }));
    expect(s.closed()).toBe("normal");
  });

  test("our FIN first: the guest's data after it is still delivered; TIME_WAIT then CLOSED", () => {
    const s = setup();
    establish(s);
    s.conn.send(Buffer.from("bye"));
    s.conn.end();
    expect(s.conn.state).toBe("FIN_WAIT_1");
    expect(s.out.at(-1)!.flags & TCP_FIN).toBeTruthy();
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001 + 4, flags: TCP_ACK }));
    expect(s.conn.state).toBe("FIN_WAIT_2");
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_005, flags: TCP_ACK, payload: Buffer.alloc(1000, 1) }));
    expect(s.delivered.reduce((n, d) => n + d.length, 0)).toBe(1000);
    s.conn.segmentArrived(s.seg({ seq: 1501, ack: 1_000_005, flags: TCP_ACK | TCP_FIN }));
    expect(s.conn.state).toBe("TIME_WAIT");
    s.timers.advance(1000);
    expect(s.closed()).toBe("normal");
  });

  test("simultaneous close: FIN_WAIT_1 + guest FIN -> CLOSING -> TIME_WAIT; a retransmitted FIN is re-acked", () => {
    const s = setup();
    establish(s);
    s.conn.end();
    expect(s.conn.state).toBe("FIN_WAIT_1");
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK | TCP_FIN }));
    expect(s.conn.state).toBe("CLOSING");
    s.conn.segmentArrived(s.seg({ seq: 502, ack: 1_000_002, flags: TCP_ACK }));
    expect(s.conn.state).toBe("TIME_WAIT");
    const n = s.out.length;
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_002, flags: TCP_ACK | TCP_FIN }));
    expect(s.out.length).toBe(n + 1);
    expect(s.out.at(-1)).toMatchObject({ flags: TCP_ACK, ack: 502 });
    s.timers.advance(1000);
    expect(s.closed()).toBe("normal");
  });

  test("gives up with RST after maxRetries unanswered retransmissions", () => {
    const s = setup();
    establish(s);
    s.conn.send(Buffer.from("anyone there?"));
    s.timers.advance(10 * 60_000);
    expect(s.closed()).toBe("timeout");
    expect(s.out.at(-1)!.flags & TCP_RST).toBeTruthy();
  });

  test("RST: exact sequence resets, in-window but inexact gets a challenge ACK (RFC 5961)", () => {
    const s = setup();
    establish(s);
    s.conn.segmentArrived(s.seg({ seq: 600, flags: TCP_RST }));
    expect(s.closed()).toBeUndefined();
    expect(s.out.at(-1)).toMatchObject({ flags: TCP_ACK, ack: 501 });
    s.conn.segmentArrived(s.seg({ seq: 501, flags: TCP_RST }));
    expect(s.closed()).toBe("reset-by-guest");
  });

  test("receive window shrinks with unconsumed data but its right edge never moves left", () => {
    let buffered = 0;
    const s = setup({ rcvBuf: 100_000, appBuffered: () => buffered });
    establish(s);
    const wnd = () => s.out.at(-1)!.window << 7;
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK, payload: Buffer.alloc(1460) }));
    buffered = 1460;
    s.conn.flushAck();
    const edge1 = 501 + 1460 + wnd();
    buffered = 90_000; // the host socket stopped draining
    s.conn.segmentArrived(s.seg({ seq: 1961, ack: 1_000_001, flags: TCP_ACK, payload: Buffer.alloc(1460) }));
    s.conn.flushAck();
    const edge2 = 1961 + 1460 + wnd();
    expect(edge2).toBeGreaterThanOrEqual(edge1 - 127); // window granularity is 2^7
    buffered = 0;
    s.conn.appDrained();
    expect(wnd()).toBeGreaterThan(90_000);
  });

  test("active open for published ports: SYN, then ACK on SYN-ACK", () => {
    const timers = new FakeTimers();
    const out: OutgoingSegment[] = [];
    let established = false;
    const conn = TcpConnection.connect(
      { localPort: 50000, remotePort: 8080, iss: 42, mss: 1460, receiveBufferBytes: 65536, sendHighWaterBytes: 65536, timeWaitMs: 10, maxRetries: 2 },
      {
        emit: (_c, s) => out.push(s),
        deliver: () => {},
        deliverEnd: () => {},
        appBuffered: () => 0,
        onSendSpace: () => {},
        onEstablished: () => {
          established = true;
        },
        onClosed: () => {},
        requestAck: () => {},
      },
      timers,
    );
    expect(out[0]).toMatchObject({ seq: 42, flags: TCP_SYN });
    conn.segmentArrived({ srcPort: 8080, dstPort: 50000, seq: 9000, ack: 43, flags: TCP_SYN | TCP_ACK, window: 29200, options: { mss: 1460, windowScale: 7 }, payload: new Uint8Array(0) });
    expect(established).toBe(true);
    expect(out[1]).toMatchObject({ seq: 43, ack: 9001, flags: TCP_ACK });
  });
});

describe("TcpConnection window scaling on an active open", () => {
  test("a SYN-ACK with window scale 0 still turns scaling on: our windows are sent scaled by our shift (7)", () => {
    const out: OutgoingSegment[] = [];
    const conn = TcpConnection.connect(
      { localPort: 50000, remotePort: 8080, iss: 42, mss: 1460, receiveBufferBytes: 65536, sendHighWaterBytes: 65536, timeWaitMs: 10, maxRetries: 2 },
      { emit: (_c, s) => out.push(s), deliver: () => {}, deliverEnd: () => {}, appBuffered: () => 0, onSendSpace: () => {}, onEstablished: () => {}, onClosed: () => {}, requestAck: () => {} },
      new FakeTimers(),
    );
    expect(out[0]!.options).toMatchObject({ windowScale: 7 });
    conn.segmentArrived({ srcPort: 8080, dstPort: 50000, seq: 9000, ack: 43, flags: TCP_SYN | TCP_ACK, window: 29200, options: { mss: 1460, windowScale: 0 }, payload: new Uint8Array(0) });
    // The guest reads our window field << 7: unscaled (65535) it would believe in an 8 MiB window and overrun us.
    expect(out[1]!.window << 7).toBeLessThanOrEqual(65536 + 127);
    expect(out[1]!.window).toBeGreaterThan(0);
  });
});

describe("TcpConnection delayed ACK", () => {
  test("a small pushed message may wait for the answer, which carries the ACK; two segments' worth is acknowledged at once", () => {
    const s = setup();
    establish(s);
    s.conn.segmentArrived(s.seg({ seq: 501, ack: 1_000_001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from("ping") }));
    expect(s.conn.flushAckOrDefer()).toBe(true);
    expect(s.out).toHaveLength(0);
    s.conn.send(Buffer.from("pong"));
    expect(s.out).toHaveLength(1);
    expect(s.out[0]).toMatchObject({ ack: 505, dataLength: 4 });
    // The ACK went with the answer: nothing is left to flush.
    s.conn.flushAck();
    expect(s.out).toHaveLength(1);

    // No answer: the owner's flushAck() after the delay sends it.
    s.conn.segmentArrived(s.seg({ seq: 505, ack: 1_000_005, flags: TCP_ACK | TCP_PSH, payload: Buffer.from("again") }));
    expect(s.conn.flushAckOrDefer()).toBe(true);
    s.conn.flushAck();
    expect(s.out.at(-1)).toMatchObject({ ack: 510, dataLength: 0 });

    // Bulk (two full segments since the last ACK) and unpushed data are acknowledged at once.
    const big = Buffer.alloc(1460);
    s.conn.segmentArrived(s.seg({ seq: 510, ack: 1_000_005, flags: TCP_ACK, payload: big }));
    s.conn.segmentArrived(s.seg({ seq: 1970, ack: 1_000_005, flags: TCP_ACK | TCP_PSH, payload: big }));
    expect(s.conn.flushAckOrDefer()).toBe(false);
    expect(s.out.at(-1)).toMatchObject({ ack: 3430 });
    s.conn.segmentArrived(s.seg({ seq: 3430, ack: 1_000_005, flags: TCP_ACK, payload: Buffer.from("x") }));
    expect(s.conn.flushAckOrDefer()).toBe(false);
    expect(s.out.at(-1)).toMatchObject({ ack: 3431 });
  });
});
