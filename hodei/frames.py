"""The frame format, without any I/O: a 4-byte big-endian body length, then the msgpack body.

The asyncio reader and writer (``hodei.framing``, for hodeid and the agent) and the CLI's blocking
client both build on this module, which imports neither asyncio nor sockets.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from hodei.errors import FrameTooLarge
from hodei.protocol import MAX_FRAME

PREFIX = struct.Struct(">I")
_encoder = msgspec.msgpack.Encoder()


def body_size(head: bytes, max_frame: int = MAX_FRAME) -> int:
    """The body length a 4-byte prefix announces, refused past the limit before a byte is read."""
    size: int
    (size,) = PREFIX.unpack(head)
    if size > max_frame:
        raise FrameTooLarge(f"a frame of {size} bytes is over the {max_frame}-byte limit")
    return size


def encode_frame(msg: Any) -> bytes:
    """One whole frame as bytes."""
    body = _encoder.encode(msg)
    return PREFIX.pack(len(body)) + body


def encode_frame_into(encoder: msgspec.msgpack.Encoder, msg: Any) -> bytearray:
    """One whole frame in a fresh buffer (a transport may keep a buffer it could not send yet)."""
    buf = bytearray(4)
    encoder.encode_into(msg, buf, 4)
    PREFIX.pack_into(buf, 0, len(buf) - 4)
    return buf
