"""Length-prefixed msgpack framing over asyncio streams (the format itself is in ``hodei.frames``).

The length is checked against ``MAX_FRAME`` before a byte of the body is read, so a peer cannot make
us allocate more.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar

import msgspec

from hodei.errors import ProtocolError
from hodei.frames import body_size, encode_frame_into
from hodei.protocol import MAX_FRAME

T = TypeVar("T")


class FrameReader(Generic[T]):
    """Reads frames from a stream and decodes them to the union ``type_``."""

    def __init__(self, reader: asyncio.StreamReader, type_: Any, max_frame: int = MAX_FRAME) -> None:
        self._reader = reader
        self._decoder: msgspec.msgpack.Decoder[T] = msgspec.msgpack.Decoder(type_)
        self._max = max_frame
        self._early = b""  # bytes wait_eof() had to take: the start of the next frame

    async def _exactly(self, n: int) -> bytes:
        if not self._early:
            return await self._reader.readexactly(n)
        head, self._early = self._early[:n], self._early[n:]
        if len(head) == n:
            return head
        try:
            return head + await self._reader.readexactly(n - len(head))
        except asyncio.IncompleteReadError as e:
            raise asyncio.IncompleteReadError(head + e.partial, n) from None

    async def read(self) -> T | None:
        """The next message, or None at a clean end of stream between frames."""
        try:
            head = await self._exactly(4)
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                return None
            raise ProtocolError("the connection closed in the middle of a frame length") from None
        size = body_size(head, self._max)
        try:
            body = await self._exactly(size)
        except asyncio.IncompleteReadError:
            raise ProtocolError("the connection closed in the middle of a frame") from None
        try:
            return self._decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise ProtocolError(f"undecodable message: {e}") from None

    async def wait_eof(self) -> None:
        """Return when the peer closes, or sends its next request; that byte is kept for read()."""
        self._early += await self._reader.read(1)


class FrameWriter:
    """Encodes messages and writes them with their length prefix."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._encoder = msgspec.msgpack.Encoder()

    def write(self, msg: Any) -> None:
        """Queue one frame; call ``drain`` to respect back-pressure."""
        # A fresh buffer each time: uvloop holds on to buffers it could not send yet.
        self._writer.write(encode_frame_into(self._encoder, msg))

    async def send(self, msg: Any) -> None:
        self.write(msg)
        await self._writer.drain()

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    async def wait_closed(self) -> None:
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    @property
    def transport(self) -> asyncio.BaseTransport:
        return self._writer.transport
