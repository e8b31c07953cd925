"""A minimal Socket.IO-over-WebSocket client on a bare asyncio Protocol, for benchmarks.

It speaks just enough: the HTTP upgrade, unfragmented-or-fragmented text frames
in, masked text frames out, WebSocket ping/pong and close, and the Engine.IO
/ Socket.IO text packets the benches need (OPEN, CONNECT, EVENT with an ack id
out, ACK in, server ping ``2`` answered with ``3``).

Why not a WebSocket library: a benchmark client has to be cheaper than every
server it measures, or the figures measure the client. Here frames are parsed
in ``data_received`` and, in throughput mode, the next EVENT is written from
that same callback, so there is no task switch on the client side at all.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time
from collections import deque

HOST = "127.0.0.1"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 16384
_MAX_MESSAGE = 1 << 20
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ClientError(Exception):
    """The server broke the protocol, refused us, closed, or did not answer in time."""


def mask(payload: bytes, key: bytes) -> bytes:
    """RFC 6455 masking (an involution), word-wide on Python ints."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = random.randbytes(4)
    return head + key + mask(payload, key)


class _Pump:
    """Closed-loop load: keeps `window` EVENTs outstanding until the deadline, then drains."""

    def __init__(self, client: RawSioClient, payload: str, seconds: float, window: int) -> None:
        self.client = client
        self.payload = payload
        self.outstanding: set[int] = set()
        self.done = 0
        self.start = time.perf_counter()
        self.end = self.start
        self.deadline = self.start + seconds
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for _ in range(window):
            self._send_next()

    def _send_next(self) -> None:
        ack_id = self.client.send_event(self.payload)
        self.outstanding.add(ack_id)

    def on_ack(self, ack_id: int) -> None:
        try:
            self.outstanding.remove(ack_id)
        except KeyError:
            self.fail(ClientError(f"unexpected ACK {ack_id}"))
            return
        now = time.perf_counter()
        if now < self.deadline:
            self.done += 1
            self.end = now
            self._send_next()
        elif not self.outstanding and not self.finished.done():
            self.finished.set_result(None)

    def fail(self, exc: Exception) -> None:
        if not self.finished.done():
            self.finished.set_exception(exc)


class RawSioClient(asyncio.Protocol):
    """One Socket.IO session on the default namespace; see the module docstring."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._key = base64.b64encode(random.randbytes(16))
        loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded: asyncio.Future[None] = loop.create_future()
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._messages: deque[str] = deque()
        self._message_waiter: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._pump: _Pump | None = None
        self._error: Exception | None = None
        self._next_id = 0
        self.sid = ""
        # Once set, every ACK's arguments are compared with it: a server that
        # answers fast with an error (a rate limit, say) must not count as fast.
        self.expected: str | None = None
        self.wrong = 0
        self.first_wrong = ""
        # Events the server emitted to us (e.g. rig_state), counted and dropped.
        self.events = 0

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        request = (
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
            f"Host: {HOST}:{self._port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ClientError(f"connection lost ({exc!r})" if exc else "connection closed"))

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        self._buffer += data
        if not self._upgraded.done() and not self._read_head():
            return
        try:
            self._read_frames()
        except ClientError as exc:
            self._fail(exc)
            self.abort()

    # -- parsing ----------------------------------------------------------------------
    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD:
                self._fail(ClientError("oversized HTTP response head"))
                self.abort()
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if len(status) < 2 or status[1] != "101":
            self._fail(ClientError(f"upgrade refused: {lines[0]!r}"))
            self.abort()
            return False
        if headers.get("sec-websocket-accept") != expected:
            self._fail(ClientError("bad Sec-WebSocket-Accept"))
            self.abort()
            return False
        self._upgraded.set_result(None)
        return True

    def _read_frames(self) -> None:
        buf = self._buffer
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            at = pos + 2
            if n == 126:
                if size - at < 2:
                    break
                n = int.from_bytes(buf[at : at + 2], "big")
                at += 2
            elif n == 127:
                if size - at < 8:
                    break
                n = int.from_bytes(buf[at : at + 8], "big")
                at += 8
            if n > _MAX_MESSAGE:
                raise ClientError(f"frame of {n} bytes")
            key = b""
            if b1 & 0x80:  # servers must not mask, but be lenient
                if size - at < 4:
                    break
                key = bytes(buf[at : at + 4])
                at += 4
            if size - at < n:
                break
            payload = bytes(buf[at : at + n])
            if key:
                payload = mask(payload, key)
            pos = at + n
            self._on_frame(bool(b0 & 0x80), b0 & 0x0F, payload)
        if pos:
            del buf[:pos]

    def _on_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            if opcode != OP_CONT and self._fragments:
                raise ClientError("new message inside a fragmented one")
            if not fin or self._fragments:
                self._fragment_size += len(payload)
                if self._fragment_size > _MAX_MESSAGE:
                    raise ClientError("message too big")
                self._fragments.append(payload)
                if not fin:
                    return
                payload = b"".join(self._fragments)
                self._fragments = []
                self._fragment_size = 0
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                return  # binary messages are not part of these benches
            self._on_text(text)
        elif opcode == OP_PING:
            self._write(encode_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._write(encode_frame(OP_CLOSE, payload[:2]))
            raise ClientError(f"server closed the WebSocket ({code})")

    def _on_text(self, text: str) -> None:
        if text.startswith("43"):
            bracket = text.find("[", 2)
            if bracket < 3 or not text[2:bracket].isdigit():
                raise ClientError(f"ACK without an id: {text[:80]!r}")
            ack_id = int(text[2:bracket])
            expected = self.expected
            if expected is not None and text[bracket:] != expected:
                self.wrong += 1
                self.first_wrong = self.first_wrong or text[bracket:]
            if self._pump is not None:
                self._pump.on_ack(ack_id)
                return
            future = self._pending.pop(ack_id, None)
            if future is None:
                raise ClientError(f"ACK {ack_id} matches no EVENT")
            if not future.done():
                future.set_result(text[bracket:])
        elif text == "2":
            self._write(encode_frame(OP_TEXT, b"3"))
        elif text.startswith("42[") and self.sid:
            self.events += 1
        elif text.startswith(("1", "41", "44")) and self._upgraded.done() and self.sid:
            raise ClientError(f"server ended the session: {text[:80]!r}")
        else:
            self._messages.append(text)
            waiter = self._message_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- errors and writing -------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        for future in [self._upgraded, self._message_waiter, *self._pending.values()]:
            if future is not None and not future.done():
                future.set_exception(exc)
        self._pending.clear()
        if self._pump is not None:
            self._pump.fail(exc)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _write(self, frame: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise ClientError("connection closed")
        self._transport.write(frame)

    def send_event(self, payload: str) -> int:
        """Write ``42<id><payload>`` and return the ack id."""
        ack_id = self._next_id
        self._next_id += 1
        self._write(encode_frame(OP_TEXT, f"42{ack_id}{payload}".encode()))
        return ack_id

    # -- the session API ------------------------------------------------------------------
    async def _next_message(self) -> str:
        while not self._messages:
            if self._error is not None:
                raise self._error
            self._message_waiter = asyncio.get_running_loop().create_future()
            await self._message_waiter
        return self._messages.popleft()

    @classmethod
    async def open(cls, port: int, timeout_s: float, auth: str = "") -> RawSioClient:
        """A joined session; ``auth`` is the CONNECT payload's JSON (e.g. an observer's role)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _transport, client = await loop.create_connection(lambda: cls(port), HOST, port)
            await client._upgraded
            opening = await client._next_message()
            if not opening.startswith("0{"):
                client.abort()
                raise ClientError(f"expected an Engine.IO OPEN packet, got {opening!r}")
            client._write(encode_frame(OP_TEXT, b"40" + auth.encode()))
            answer = await client._next_message()
        if not answer.startswith("40"):
            client.abort()
            raise ClientError(f"namespace join refused: {answer!r}")
        client.sid = str(json.loads(answer[2:]).get("sid", "")) if len(answer) > 2 else ""
        return client

    async def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._error = self._error or ClientError("closed by the bench")
            self._transport.write(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            self._transport.close()

    async def call(self, payload: str, timeout_s: float) -> str:
        """Send one EVENT and return its ACK arguments (a JSON array text)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(timeout_s):
            if self._error is not None:
                raise self._error
            self._pending[self._next_id] = future
            self.send_event(payload)
            return await future

    async def latencies_ns(self, payload: str, count: int, timeout_s: float) -> list[int]:
        """Round trip of count calls, one in flight at a time."""
        loop = asyncio.get_running_loop()
        samples: list[int] = []
        pending = self._pending
        for _ in range(count):
            if self._error is not None:
                raise self._error
            future: asyncio.Future[str] = loop.create_future()
            async with asyncio.timeout(timeout_s):
                pending[self._next_id] = future
                start = time.perf_counter_ns()
                self.send_event(payload)
                await future
                samples.append(time.perf_counter_ns() - start)
        return samples

    async def throughput(
        self, payload: str, seconds: float, window: int, timeout_s: float
    ) -> tuple[int, float]:
        """(acks, elapsed seconds) with `window` calls kept in flight for `seconds`."""
        if self._error is not None:
            raise self._error
        async with asyncio.timeout(seconds + timeout_s):
            pump = self._pump = _Pump(self, payload, seconds, window)
            try:
                await pump.finished
            finally:
                self._pump = None
        return pump.done, pump.end - pump.start
