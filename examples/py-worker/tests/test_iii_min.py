"""Unit tests for the stdlib WebSocket framing (run: python3 -m unittest discover -s tests)."""

import struct
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iii_min import OP_PING, OP_TEXT, WebSocketClosed, decode_frame_header, encode_frame  # noqa: E402


def reader(data: bytes):
    view = {"pos": 0}

    def read(n: int) -> bytes:
        chunk = data[view["pos"] : view["pos"] + n]
        if len(chunk) < n:
            raise WebSocketClosed("short read")
        view["pos"] += n
        return chunk

    return read


class FramingTest(unittest.TestCase):
    def test_rfc6455_masked_hello_example(self):
        # RFC 6455 section 5.7: a single-frame masked text message "Hello".
        frame = encode_frame(OP_TEXT, b"Hello", mask_key=bytes([0x37, 0xFA, 0x21, 0x3D]))
        self.assertEqual(frame, bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]))
        self.assertEqual(decode_frame_header(reader(frame)), (True, OP_TEXT, b"Hello"))

    def test_lengths_use_16_and_64_bit_forms(self):
        for size, marker in ((125, 125), (126, 126), (65535, 126), (65536, 127)):
            frame = encode_frame(OP_TEXT, b"x" * size, mask_key=b"\x01\x02\x03\x04")
            self.assertEqual(frame[1] & 0x7F, marker)
            self.assertEqual(decode_frame_header(reader(frame))[2], b"x" * size)

    def test_unmasked_server_frame(self):
        frame = bytes([0x89, 0x02]) + b"hi"
        self.assertEqual(decode_frame_header(reader(frame)), (True, OP_PING, b"hi"))

    def test_rejects_oversized_frames(self):
        frame = bytes([0x81, 0x7F]) + struct.pack("!Q", 1 << 40)
        with self.assertRaises(WebSocketClosed):
            decode_frame_header(reader(frame))


if __name__ == "__main__":
    unittest.main()
