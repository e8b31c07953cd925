"""One serial port to a Scientifica controller: line transactions with deadlines, on Trio.

A transaction is one command and its one-line reply. Replies name no
command, so a late reply to an abandoned command would answer the next one:
each reply is checked for the shape its command expects, a garbled or
missing one is drained and the command sent once more (every command ephysd
sends is safe to repeat), and only then is it an error, well within a
second. Errors are mapped here, once: the port vanishing is
:class:`DeviceLost`; a controller that answers nothing, twice, is
:class:`DeviceLost` too (powered off, or its cable pulled behind the USB
adapter), so the actor takes it offline and reopens it; nonsense is
:class:`DeviceError`; ``E,<n>`` is :class:`ControllerError`.

Callers serialise transactions with a :class:`drivers.priority_lock.PriorityLock`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import trio

from drivers.base import DeviceError, DeviceLost
from drivers.scientifica.protocol import (
    ControllerError,
    CorruptReply,
    LineDecoder,
    encode,
    error_number,
    is_error,
)
from drivers.serial_io import SerialPort

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLY_TIMEOUT_S = 0.3
"""Per attempt. The longest reply (a position, ~25 characters) takes ~26 ms at 9600 baud,
plus up to 16 ms of FTDI latency timer; two attempts and the drains stay under 1 s."""
DRAIN_QUIET_S = 0.03
"""Draining ends once the line has been quiet this long ..."""
DRAIN_MAX_S = 0.1
"""... or after this long, whatever still arrives."""
READ_CHUNK = 256


class NoReply(DeviceError):
    """One attempt got no reply line in time."""


class ScientificaLink:
    """The byte pipe and line framing of one port."""

    def __init__(self, device: str, reply_timeout_s: float = REPLY_TIMEOUT_S) -> None:
        self.device = device
        self.reply_timeout_s = reply_timeout_s
        self.baud = 0
        self._port = SerialPort(device, log, logging.DEBUG)  # opened at each rate it tries
        self._decoder = LineDecoder()
        self._abandoned = False
        """A command's reply may still be on its way: drain before the next one."""

    @property
    def is_open(self) -> bool:
        return self._port.is_open

    async def open(self, baud: int) -> None:
        await self._port.open(baud)
        self.baud = baud
        self._decoder = LineDecoder()
        self._abandoned = False

    async def close(self) -> None:
        await self._port.close()

    # --- transactions ---------------------------------------------------------

    async def transact(
        self,
        command: str,
        parse: Callable[[str], T],
        *,
        urgent: bool = False,
        timeout_s: float | None = None,
    ) -> T:
        """Send ``command`` and return its reply, parsed; at most two attempts.

        ``urgent`` (STOP) goes out at once, without first draining a reply
        that may still be on its way: lines that do not parse are taken for
        that late reply and skipped while waiting for this one.
        """
        timeout_s = self.reply_timeout_s if timeout_s is None else timeout_s
        accept = _parses(parse) if urgent else None
        garbled: str | None = None
        for attempt in (1, 2):
            try:
                line = await self.exchange(command, timeout_s, accept=accept)
            except NoReply:
                log.warning("%s: no reply to %r (attempt %d)", self.device, command, attempt)
            else:
                if is_error(line):
                    raise ControllerError(self.device, command, error_number(line))
                try:
                    return parse(line)
                except CorruptReply as exc:
                    garbled = line
                    log.warning("%s: %s to %r (attempt %d)", self.device, exc, command, attempt)
            if attempt == 1:
                await self.drain()
        if garbled is None:
            raise DeviceLost(
                f"{self.device}: no reply to {command!r}, sent twice: the controller is silent"
            )
        raise DeviceError(f"{self.device}: garbled reply {garbled!r} to {command!r}, sent twice")

    async def exchange(
        self, command: str, timeout_s: float, *, accept: Callable[[str], bool] | None = None
    ) -> str:
        """One attempt: write ``command``, return the next reply line (one ``accept`` takes)."""
        if self._abandoned and accept is None:
            await self.drain()
        stale = self._decoder.clear()
        if stale:
            log.debug("%s: dropped stale bytes %r", self.device, stale)
        with trio.CancelScope(shield=True):  # never half a command on the line
            await self._write(encode(command))
        self._abandoned = True
        with trio.move_on_after(timeout_s):
            while True:
                line = await self._read_line()
                if accept is None or accept(line):
                    self._abandoned = False
                    return line
                log.debug("%s: skipped %r waiting for the reply to %r", self.device, line, command)
        raise NoReply(f"{self.device}: no reply to {command!r} within {timeout_s * 1000:.0f} ms")

    async def drain(self) -> None:
        """Read and drop whatever arrives until the line is quiet (bounded)."""
        dropped = self._decoder.clear()
        with trio.move_on_after(DRAIN_MAX_S):
            while True:
                with trio.move_on_after(DRAIN_QUIET_S) as quiet:
                    dropped += await self._port.receive(READ_CHUNK)
                if quiet.cancelled_caught:
                    break
        self._abandoned = False
        if dropped:
            log.debug("%s: drained %r", self.device, dropped)

    # --- bytes ------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        await self._port.send(data, self.reply_timeout_s)
        log.debug("%s >> %r", self.device, data)

    async def _read_line(self) -> str:
        while (line := self._decoder.next_line()) is None:
            self._decoder.receive_data(await self._port.receive(READ_CHUNK))
        log.debug("%s << %r", self.device, line)
        return line


def _parses(parse: Callable[[str], object]) -> Callable[[str], bool]:
    """Accept a line that parses, or an error reply (which the caller raises)."""

    def accept(line: str) -> bool:
        if is_error(line):
            return True
        try:
            parse(line)
        except CorruptReply:
            return False
        return True

    return accept
