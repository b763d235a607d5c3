"""A minimal, stdlib-only iii worker client.

The official Python SDK (`iii-sdk` on PyPI) needs `websockets`, `pydantic` and OpenTelemetry from PyPI, which
this project cannot reach, so this module speaks the engine's worker protocol directly over a small RFC 6455
WebSocket client. It covers what a simple worker needs: register functions, answer `invokefunction` with
`invocationresult`, describe itself through `engine::workers::register`, keep the connection alive with pings,
and reconnect (re-registering everything) when the engine goes away. It has no triggers, channels, streams,
tracing or `trigger()` calls to other functions; use the official SDK for those.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import socket
import ssl
import struct
import sys
import threading
import traceback
from typing import Any, Callable
from urllib.parse import urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class WebSocketClosed(Exception):
    """The peer closed the connection (or it broke)."""


def encode_frame(opcode: int, payload: bytes, mask_key: bytes | None = None) -> bytes:
    """One final frame. Clients must mask (RFC 6455 5.3); pass mask_key only to make tests deterministic."""
    if mask_key is None:
        mask_key = os.urandom(4)
    header = bytearray([0x80 | opcode])
    length = len(payload)
    if length < 126:
        header.append(0x80 | length)
    elif length < 1 << 16:
        header.append(0x80 | 126)
        header += struct.pack("!H", length)
    else:
        header.append(0x80 | 127)
        header += struct.pack("!Q", length)
    header += mask_key
    masked = bytes(b ^ mask_key[i % 4] for i, b in enumerate(payload))
    return bytes(header) + masked


def decode_frame_header(read: Callable[[int], bytes]) -> tuple[bool, int, bytes]:
    """Reads one frame with `read(n)` (exactly n bytes). Returns (fin, opcode, unmasked payload)."""
    first, second = read(2)
    fin = bool(first & 0x80)
    opcode = first & 0x0F
    masked = bool(second & 0x80)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", read(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", read(8))
    if length > MAX_MESSAGE_BYTES:
        raise WebSocketClosed(f"frame of {length} bytes is larger than {MAX_MESSAGE_BYTES}")
    mask_key = read(4) if masked else b""
    payload = read(length) if length else b""
    if masked:
        payload = bytes(b ^ mask_key[i % 4] for i, b in enumerate(payload))
    return fin, opcode, payload


class WebSocket:
    """A blocking WebSocket client connection: `send_text`, `recv_text` (answers pings itself), `close`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss"):
            raise ValueError(f"not a ws:// or wss:// URL: {url}")
        host = parts.hostname or "localhost"
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sock = socket.create_connection((host, port), timeout=timeout)
        if parts.scheme == "wss":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        self._sock = sock
        self._send_lock = threading.Lock()
        self._buffer = b""
        key = base64.b64encode(os.urandom(16)).decode()
        host_header = host if parts.port is None else f"{host}:{port}"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(request.encode())
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *header_lines = head.split("\r\n")
        if " 101 " not in f"{status_line} ":
            raise WebSocketClosed(f"handshake refused: {status_line}")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise WebSocketClosed("handshake failed: bad Sec-WebSocket-Accept")
        sock.settimeout(None)

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise WebSocketClosed("connection closed during the handshake")
            self._buffer += chunk
            if len(self._buffer) > 64 * 1024:
                raise WebSocketClosed("handshake response too large")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self._sock.recv(max(4096, n - len(self._buffer)))
            if not chunk:
                raise WebSocketClosed("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        with self._send_lock:
            try:
                self._sock.sendall(encode_frame(opcode, payload))
            except OSError as error:
                raise WebSocketClosed(str(error)) from error

    def send_text(self, text: str) -> None:
        self._send(OP_TEXT, text.encode("utf-8"))

    def ping(self) -> None:
        self._send(OP_PING, b"")

    def recv_text(self) -> str:
        """The next text message (binary messages are decoded as UTF-8 too). Raises WebSocketClosed."""
        parts: list[bytes] = []
        while True:
            try:
                fin, opcode, payload = decode_frame_header(self._read_exact)
            except OSError as error:
                raise WebSocketClosed(str(error)) from error
            if opcode == OP_PING:
                self._send(OP_PONG, payload)
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                try:
                    self._send(OP_CLOSE, payload[:2])
                except WebSocketClosed:
                    pass
                raise WebSocketClosed("closed by the peer")
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode("utf-8")
            else:
                raise WebSocketClosed(f"unknown opcode {opcode:#x}")

    def close(self) -> None:
        try:
            self._send(OP_CLOSE, struct.pack("!H", 1000))
        except WebSocketClosed:
            pass
        try:
            self._sock.close()
        except OSError:
            pass


Handler = Callable[[Any], Any]


class Worker:
    """Registers functions with an iii engine and serves invocations until `stop()`."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.functions: dict[str, tuple[Handler, str | None]] = {}
        self.worker_id: str | None = None
        self._ws: WebSocket | None = None
        self._stopping = threading.Event()

    def register_function(self, function_id: str, handler: Handler, description: str | None = None) -> None:
        self.functions[function_id] = (handler, description)
        if self._ws is not None:
            self._send_registration(function_id)

    def _send(self, message: dict[str, Any]) -> None:
        if self._ws is not None:
            self._ws.send_text(json.dumps(message))

    def _send_registration(self, function_id: str) -> None:
        _, description = self.functions[function_id]
        message: dict[str, Any] = {"type": "registerfunction", "id": function_id}
        if description:
            message["description"] = description
        self._send(message)

    def _on_connected(self) -> None:
        for function_id in self.functions:
            self._send_registration(function_id)
        # Fire-and-forget (no invocation_id), as the official SDKs describe themselves to the engine.
        self._send(
            {
                "type": "invokefunction",
                "function_id": "engine::workers::register",
                "data": {
                    "runtime": "python",
                    "version": "stdlib-min-0.1",
                    "name": self.name,
                    "os": f"{sys.platform} ({os.uname().machine})",
                    "pid": os.getpid(),
                },
                "action": {"type": "void"},
            }
        )

    def _on_invoke(self, message: dict[str, Any]) -> None:
        invocation_id = message.get("invocation_id")
        function_id = message.get("function_id", "")
        entry = self.functions.get(function_id)
        reply: dict[str, Any] = {"type": "invocationresult", "invocation_id": invocation_id, "function_id": function_id}
        if entry is None:
            reply["error"] = {"code": "function_not_found", "message": f"{function_id} is not registered here"}
        else:
            try:
                reply["result"] = entry[0](message.get("data"))
            except Exception as error:  # the worker reports it; it must not crash the connection
                reply["error"] = {
                    "code": "invocation_failed",
                    "message": str(error),
                    "stacktrace": traceback.format_exc(),
                }
        if invocation_id:
            self._send(reply)

    def _keepalive(self, ws: WebSocket) -> None:
        # The official SDKs ping every 20 s and expect traffic within 60 s; do the same so idle links stay up.
        while not self._stopping.wait(20.0) and self._ws is ws:
            try:
                ws.ping()
            except WebSocketClosed:
                return

    def run_forever(self) -> None:
        """Connects, serves, and reconnects with capped exponential backoff until `stop()`."""
        attempt = 0
        while not self._stopping.is_set():
            try:
                ws = WebSocket(self.url)
            except (OSError, WebSocketClosed) as error:
                delay = min(30.0, 1.0 * 2**attempt) * random.uniform(0.7, 1.3)
                attempt += 1
                print(f"[iii] cannot reach {self.url} ({error}); retrying in {delay:.1f}s", file=sys.stderr, flush=True)
                self._stopping.wait(delay)
                continue
            attempt = 0
            self._ws = ws
            threading.Thread(target=self._keepalive, args=(ws,), daemon=True).start()
            try:
                self._on_connected()
                while True:
                    message = json.loads(ws.recv_text())
                    kind = message.get("type")
                    if kind == "invokefunction":
                        # One thread per invocation so a slow handler does not block the others.
                        threading.Thread(target=self._on_invoke, args=(message,), daemon=True).start()
                    elif kind == "workerregistered":
                        self.worker_id = message.get("worker_id")
                    elif kind == "ping":
                        self._send({"type": "pong"})
            except WebSocketClosed as error:
                if not self._stopping.is_set():
                    print(f"[iii] disconnected from {self.url} ({error}); reconnecting", file=sys.stderr, flush=True)
            finally:
                self._ws = None
                ws.close()

    def stop(self) -> None:
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            ws.close()
