"""A serial platform's port: opening, closing, and bytes in and out, the same on every platform.

The port is locked for this process (trio-serial's ``exclusive``, an flock), so
``ephysd check`` or a second daemon cannot talk over a running one. Failures map
to the driver contract here, once: a port that cannot be opened (unplugged,
locked, no permission) or that fails under a read, write or purge (the USB
cable pulled) is :class:`DeviceLost`, which the actor answers by reopening with
backoff; a write that does not drain in time is :class:`DeviceError`. A port
that failed is closed before the error goes on, so the link above it reads as
closed (``is_open``) and nothing more is sent through it. Closing never raises
and is never cut short.

Each platform's link (``drivers/<platform>/transport.py``) frames its own
protocol on top and logs its own wire traffic.
"""

from __future__ import annotations

import logging
import termios
from collections.abc import Callable

import trio
from trio_serial import SerialStream
from trio_serial.abstract import AbstractSerialStream

from drivers.base import DeviceError, DeviceLost

GONE = (OSError, trio.ClosedResourceError, trio.BrokenResourceError)
"""What a stream raises when its port has vanished."""


class SerialPort:
    """One device's stream while it is open.

    ``log`` and ``level`` are the link's: where "opened" and "closed" are
    logged (a link that opens a port at several rates to find its device logs
    them at DEBUG).
    """

    def __init__(self, device: str, log: logging.Logger, level: int = logging.INFO) -> None:
        self.device = device
        self._log = log
        self._level = level
        self._stream: AbstractSerialStream | None = None

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    async def open(self, baud: int) -> None:
        """(Re)open at ``baud``; DeviceLost if the port cannot be had."""
        await self.close()
        stream = SerialStream(self.device, baudrate=baud, exclusive=True)
        try:
            await stream.aopen()
        except OSError as exc:
            raise DeviceLost(f"cannot open {self.device}: {exc.strerror or exc}") from exc
        self._stream = stream
        self._log.log(self._level, "opened %s at %d baud", self.device, baud)

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        with trio.CancelScope(shield=True):
            try:
                await stream.aclose()
            except OSError as exc:
                self._log.debug("closing %s: %s", self.device, exc)
        self._log.log(self._level, "closed %s", self.device)

    async def send(
        self, data: bytes, timeout_s: float, shown: Callable[[bytes], str] = repr
    ) -> None:
        """Write ``data`` within ``timeout_s`` (``shown`` spells it in the error)."""
        stream = self._require_open()
        try:
            with trio.fail_after(timeout_s):
                await stream.send_all(data)
        except trio.TooSlowError:
            raise DeviceError(f"{self.device}: write of {shown(data)} timed out") from None
        except GONE as exc:
            await self.close()
            raise DeviceLost(f"{self.device} is gone: {exc}") from exc

    async def receive(self, max_bytes: int) -> bytes:
        """Some bytes (waits for at least one)."""
        stream = self._require_open()
        try:
            data = await stream.receive_some(max_bytes)
        except GONE as exc:
            await self.close()
            raise DeviceLost(f"{self.device} is gone: {exc}") from exc
        if not data:
            await self.close()
            raise DeviceLost(f"{self.device} is gone (end of file)")
        return bytes(data)

    async def discard_input(self) -> None:
        """Drop what the device sent that nobody has read yet."""
        stream = self._require_open()
        try:
            await stream.discard_input()
        except (OSError, termios.error) as exc:  # tcflush raises termios.error, no OSError
            await self.close()
            raise DeviceLost(f"{self.device} is gone: {exc}") from exc

    def _require_open(self) -> AbstractSerialStream:
        if self._stream is None:
            raise DeviceLost(f"{self.device} is not open")
        return self._stream
