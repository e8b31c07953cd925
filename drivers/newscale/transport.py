"""One serial port to an M3-USB bridge: framed transactions with deadlines, on Trio.

A transaction is one command and its reply. The bridge is half-duplex in
practice, so transactions never overlap; :class:`drivers.priority_lock.PriorityLock`
orders them and lets a halt jump the queue of position reads. Errors are mapped here, once:
the port vanishing is :class:`DeviceLost`, silence or nonsense is
:class:`DeviceError`.
"""

from __future__ import annotations

import contextlib
import logging

import trio

from drivers.base import DeviceError
from drivers.newscale.codec import HIGH_BIT, CodecError, Frame, ReplyDecoder, shown
from drivers.serial_io import SerialPort

log = logging.getLogger(__name__)

REPLY_TIMEOUT_S = 0.1
"""Per transaction; a full ``<10 ...>`` reply takes ~1.3 ms on the wire at 250000 baud."""

IN_FLIGHT_GRACE_S = 0.02
"""How long a cancelled transaction may still wait for its reply before the halt goes out."""

READ_CHUNK = 256


class SerialLink:
    """The byte pipe and framing for one port; callers serialise with a PriorityLock."""

    def __init__(self, device: str, baud: int, reply_timeout_s: float = REPLY_TIMEOUT_S) -> None:
        self.device = device
        self.baud = baud
        self.reply_timeout_s = reply_timeout_s
        self._port = SerialPort(device, log)
        self._decoder = ReplyDecoder()

    @property
    def is_open(self) -> bool:
        return self._port.is_open

    async def open(self) -> None:
        await self._port.open(self.baud)
        self._decoder = ReplyDecoder()

    async def close(self) -> None:
        await self._port.close()

    async def transact(
        self, command: bytes, timeout_s: float | None = None, echo: tuple[str, ...] = ()
    ) -> Frame:
        """Send ``command`` and return its reply (same code, or an error reply).

        The write is shielded so a frame is never cut in half. When cancelled
        while waiting, the reply in flight still gets a short grace period; a
        reply that comes later is discarded by the next transaction, which
        matches replies by command code and by ``echo``, the arguments the
        reply must start with (so a late ``<A0 01 1>`` cannot answer the select
        of stage 02).
        """
        timeout_s = self.reply_timeout_s if timeout_s is None else timeout_s
        expected = (_expected_code(command), echo)
        self._drop_stale()
        with trio.CancelScope(shield=True):
            await self._write(command)
        try:
            with trio.move_on_after(timeout_s) as timer:
                reply = await self._read_reply(expected)
        except trio.Cancelled:
            # Stop: let the reply in flight finish (briefly) so the halt that
            # follows does not talk over it, then go on being cancelled.
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(IN_FLIGHT_GRACE_S),
                contextlib.suppress(DeviceError),
            ):
                await self._read_reply(expected)
            raise
        if timer.cancelled_caught:
            ms = timeout_s * 1000
            raise DeviceError(f"{self.device}: no reply to {shown(command)} within {ms:.0f} ms")
        return reply

    def _drop_stale(self) -> None:
        """Anything complete in the buffer before we send answers an earlier, abandoned command."""
        while True:
            try:
                frame = self._decoder.next_frame()
            except CodecError as exc:
                log.debug("%s: dropped malformed frame: %s", self.device, exc)
                continue
            if frame is None:
                return
            log.debug("%s: dropped stale reply %s", self.device, frame)

    async def _write(self, data: bytes) -> None:
        await self._port.send(data, self.reply_timeout_s, shown)
        log.debug("%s >> %r", self.device, data)

    async def _read_reply(self, expected: tuple[str, tuple[str, ...]]) -> Frame:
        while True:
            try:
                frame = self._decoder.next_frame()
            except CodecError as exc:
                log.warning("%s: malformed reply skipped: %s", self.device, exc)
                continue
            if frame is not None:
                log.debug("%s << %s", self.device, frame)
                code, echo = expected
                if (frame.code == code and frame.args[: len(echo)] == echo) or frame.is_error:
                    return frame
                log.debug("%s: reply %s does not answer %s; skipped", self.device, frame, expected)
                continue
            self._decoder.receive_data(await self._port.receive(READ_CHUNK))


def _expected_code(command: bytes) -> str:
    """The code the reply echoes: the two characters after ``<`` (a bridge command's high
    bits cleared)."""
    code = bytes(b & ~HIGH_BIT for b in command[1:3])
    return code.decode("ascii")
