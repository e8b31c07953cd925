"""A minimal server-side WebSocket over a Trio stream, driven by wsproto.

h11 has already parsed the upgrade request on the same connection (one port
serves polling and WebSocket), so this takes over after the ``101`` with
wsproto's frame-level :class:`~wsproto.connection.Connection`. Messages are
assembled here with a byte budget so an oversized one is refused with close
code 1009 as soon as it crosses the limit, never buffered whole.

Incoming frames take a fast path while they are all of the usual kind
(complete, masked, unfragmented text or binary, at most 64 KiB and within
the limit): they are unmasked here, which costs a fraction of wsproto's
general parser on every message. The first frame of any other kind (a
control frame, a fragment, a big one, bad UTF-8) hands the byte stream, from
that frame on, to wsproto for the rest of the connection.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError

log = logging.getLogger(__name__)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_RECV_CHUNK = 65536
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013

# Polling a busy peer's socket briefly before sleeping on it (see ``_receive_data``).
CHATTY_GAP_S = 0.0005
"""A peer whose last two messages came closer together than this is sending back to back."""
POLL_BEFORE_SLEEP_S = 0.0001
"""How long to keep trying the socket of such a peer before sleeping in epoll."""
POLL_BEFORE_SLEEP_TRIES = 32


def accept_key(client_key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a handshake's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(client_key + _GUID).digest())


def data_frame(message: str | bytes) -> bytes:
    """One unfragmented, unmasked server data frame (RFC 6455 section 5.2).

    Built here rather than by wsproto because it is the per-message hot path
    and a server frame is only a header in front of the payload; wsproto still
    owns parsing, control frames and the closing handshake.
    """
    if isinstance(message, str):
        payload, first = message.encode("utf-8"), 0x81  # FIN + text
    else:
        payload, first = message, 0x82  # FIN + binary
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return struct.pack("!BBH", first, 126, size) + payload
    return struct.pack("!BBQ", first, 127, size) + payload


class MessageTooBig(Exception):
    """The peer sent a message over the size limit; the socket is already closing."""


class WebSocket:
    """Message-level WebSocket on an already-upgraded stream."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        trailing_data: bytes,
        max_message: int,
        write_timeout: float,
    ) -> None:
        self._stream = stream
        self._ws = Connection(ConnectionType.SERVER)
        # Fast-path state: bytes of an incomplete frame, and whether wsproto
        # has taken over the incoming stream.
        self._raw = b""
        self._fast = True
        self._drained = False
        # When the last message arrived (time.perf_counter) and whether the
        # gap before it was short: see ``_receive_data``.
        self._last_arrival = 0.0
        self._chatty = False
        self._max = max_message
        self._write_timeout = write_timeout
        self._send_lock = trio.Lock()
        self._ready: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._closed = False
        self.write_started: float | None = None
        # Bytes of a write-through frame the kernel did not take at once; they
        # go out before anything else. ``on_pending`` wakes whoever flushes.
        self._pending = b""
        self.on_pending: Callable[[], None] | None = None
        # Set by the session: True while answers to what was just read are
        # being produced on other tasks (deferred acks). See ``_receive_data``.
        self.answers_pending: Callable[[], bool] | None = None
        try:
            self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        except OSError:
            self._fd = -1
        if trailing_data:
            self._parse_fast(bytes(trailing_data))

    @property
    def closed(self) -> bool:
        return self._closed

    async def receive(self) -> str | bytes | None:
        """Next complete message, or None once the connection is closed."""
        while not self._ready:
            if self._closed:
                return None
            if not self._fast:
                await self._process_events()
                if self._ready or self._closed:
                    continue
            data = await self._receive_data()
            if not data:
                self._hand_over(self._raw)
                self._ws.receive_data(None)
            elif self._fast:
                self._parse_fast(data)
            else:
                self._ws.receive_data(data)
            # A peer with one message in flight has likely sent nothing more
            # yet; one that pipelines likely has.
            self._drained = len(data) < _RECV_CHUNK and len(self._ready) <= 1
        return self._ready.popleft()

    async def _receive_data(self) -> bytes:
        """Next bytes from the peer, b"" at the end.

        On a real socket this waits for readiness first when the last read
        looked like the end of what the peer had sent, instead of trying a
        read that fails with EAGAIN and then waiting (Trio's
        ``receive_some``): a system call and some wrapping less per message
        at one message in flight. Always at least one checkpoint.
        """
        fd = self._fd
        try:
            if fd < 0:
                return bytes(await self._stream.receive_some(_RECV_CHUNK))
            if self._drained:
                # Re-arming the socket in epoll is a system call. While another
                # task is about to write the answer to what we just read (a
                # manipulator's actor), let it go first: the call then happens
                # after the answer is on the wire, not before. At most two
                # passes, so a slow answer never delays reading.
                pending = self.answers_pending
                if pending is not None and pending():
                    await trio.lowlevel.checkpoint()
                    if pending():
                        await trio.lowlevel.checkpoint()
                if self._chatty:
                    data = await self._poll_before_sleep(fd)
                    if data is not None:
                        return self._arrived(data)
                await trio.lowlevel.wait_readable(fd)
            else:
                await trio.lowlevel.checkpoint()
            while True:
                try:
                    data = os.read(fd, _RECV_CHUNK)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(fd)
                    continue
                return self._arrived(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return b""

    def _arrived(self, data: bytes) -> bytes:
        now = time.perf_counter()
        self._chatty = now - self._last_arrival < CHATTY_GAP_S
        self._last_arrival = now
        return data

    async def _poll_before_sleep(self, fd: int) -> bytes | None:
        """The peer's next bytes if they come within POLL_BEFORE_SLEEP_S, else None.

        A peer sending back to back (a client polling several manipulators,
        each asking again as soon as it has its answer) usually has its next
        message on the way. Sleeping in epoll until it lands costs a wake-up,
        which on a virtual machine is slower than the whole answer: that made
        Pinpoint's polling slower against ephysd than against upstream, whose
        busier loop rarely sleeps. Trying the socket between checkpoints for a
        moment (other tasks run at each one; the time is real time, so a mock
        clock cannot stretch it, and the tries are counted too) keeps the
        answers flowing; a peer that pauses costs at most this much CPU.
        """
        give_up = time.perf_counter() + POLL_BEFORE_SLEEP_S
        for _ in range(POLL_BEFORE_SLEEP_TRIES):
            await trio.lowlevel.checkpoint()
            try:
                return os.read(fd, _RECV_CHUNK)
            except BlockingIOError:
                pass
            if time.perf_counter() >= give_up:
                break
        return None

    def _parse_fast(self, data: bytes) -> None:
        """Take the complete ordinary frames at the front of the stream (RFC 6455 5.2)."""
        buf = self._raw + data if self._raw else data
        n = len(buf)
        i = 0
        ready = self._ready
        incomplete = False
        while n - i >= 2:
            first = buf[i]
            second = buf[i + 1]
            if (first != 0x81 and first != 0x82) or not second & 0x80:
                break  # not FIN + text/binary, or unmasked: wsproto decides
            length = second & 0x7F
            if length < 126:
                start = i + 6
            elif length == 126:
                if n - i < 4:
                    incomplete = True
                    break
                length = (buf[i + 2] << 8) | buf[i + 3]
                start = i + 8
            else:
                break
            if length > self._max:
                break  # wsproto's path applies the budget and closes with 1009
            end = start + length
            if end > n:
                incomplete = True
                break
            if length:
                mask = buf[start - 4 : start]
                key = int.from_bytes((mask * ((length >> 2) + 1))[:length], "big")
                payload = (int.from_bytes(buf[start:end], "big") ^ key).to_bytes(length, "big")
            else:
                payload = b""
            if first == 0x81:
                try:
                    ready.append(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    break  # wsproto closes with 1007
            else:
                ready.append(payload)
            i = end
        else:
            incomplete = True
        if incomplete:
            self._raw = buf[i:] if i < n else b""
        else:
            self._hand_over(buf[i:])

    def _hand_over(self, data: bytes) -> None:
        """Let wsproto parse everything from here on, starting at a frame boundary."""
        self._raw = b""
        if self._fast:
            self._fast = False
            if log.isEnabledFor(logging.DEBUG):
                log.debug("websocket: wsproto takes over incoming frames")
        if data:
            self._ws.receive_data(data)

    async def _process_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                await self._add_part(event)
            elif isinstance(event, Ping):
                await self._write(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._write(self._ws.send(event.response()))
                self._closed = True
                return

    async def _add_part(self, event: TextMessage | BytesMessage) -> None:
        data: str | bytes = event.data if isinstance(event.data, str) else bytes(event.data)
        size = len(data)
        if isinstance(data, str) and self._size + 4 * size > self._max:
            size = len(data.encode("utf-8"))  # exact count only when it could matter
        self._size += size
        if self._size > self._max:
            log.debug("websocket message over %d bytes: closing with 1009", self._max)
            await self.close(CLOSE_TOO_BIG, "message too big")
            raise MessageTooBig
        if event.message_finished and not self._parts:
            self._ready.append(data)  # the usual single-frame message
            self._size = 0
            return
        self._parts.append(data)
        if event.message_finished:
            if isinstance(event, TextMessage):
                message: str | bytes = "".join(p for p in self._parts if isinstance(p, str))
            else:
                message = b"".join(p for p in self._parts if isinstance(p, bytes))
            self._ready.append(message)
            self._parts = []
            self._size = 0

    async def send_many(self, messages: list[str | bytes]) -> None:
        """Send messages as one write; raises BrokenResourceError if the socket is gone.

        Not bounded in time by itself: callers either hold a deadline or watch
        :meth:`write_stalled`.
        """
        if self._closed or self._ws.state is not ConnectionState.OPEN:
            raise trio.BrokenResourceError("websocket closed")
        await self._write(b"".join(data_frame(m) for m in messages))

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def try_send_now(self, message: str | bytes) -> bool:
        """Write a message at once, without a scheduler pass; False if it must be queued.

        Possible only when no other write is in progress or pending, so frames
        never interleave. What the kernel does not take right away is kept as
        pending bytes and ``on_pending`` is called, so the caller never waits
        on the peer here.
        """
        if (
            self._fd < 0
            or self._pending
            or self._closed
            or self._send_lock.locked()
            or self._ws.state is not ConnectionState.OPEN
        ):
            return False
        frame = data_frame(message)
        try:
            written = os.write(self._fd, frame)
        except BlockingIOError:
            written = 0
        except OSError:
            written = 0  # the flush hits the same error through Trio and reports it
        if written < len(frame):
            self._pending = frame[written:]
            if self.on_pending is not None:
                self.on_pending()
        return True

    async def flush(self) -> None:
        """Send pending write-through bytes, if any."""
        if self._pending:
            await self._write(b"")

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame (once); never raises, never waits past the write timeout."""
        if self._closed or self._ws.state is not ConnectionState.OPEN:
            self._closed = True
            return
        self._closed = True
        with trio.move_on_after(self._write_timeout):
            try:
                data = self._ws.send(CloseConnection(code=code, reason=reason))
                await self._write(data)
            except (WSLocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _write(self, data: bytes) -> None:
        # The lock is almost never contended (the reader only writes pongs and
        # close replies), so take it without the scheduler pass of ``async with``.
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        # No deadline per write (a cancel scope per message is a measurable
        # share of the cost): the owner watches ``write_started`` instead and
        # cancels a write that stalls past the write timeout.
        if self._pending:
            data, self._pending = self._pending + data, b""
        self.write_started = trio.current_time()
        try:
            await self._stream.send_all(data)
        finally:
            self.write_started = None
            self._send_lock.release()

    def write_stalled(self, now: float) -> bool:
        """True when a write has been waiting on the peer for longer than the write timeout."""
        started = self.write_started
        return started is not None and now - started > self._write_timeout
