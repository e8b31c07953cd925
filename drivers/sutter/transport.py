"""One MPC-200 / MPC-325 serial port: exact-length replies with deadlines, on Trio.

Only the port's bus task (:mod:`drivers.sutter.bus`) calls this, so nothing
here locks. The rules of the line live here, once: purge the input before a
command, leave the manual's 2 ms between commands, read replies by exact byte
count, and map errors: the port vanishing is :class:`DeviceLost`, silence or a
reply of the wrong shape is :class:`DeviceError` after one drained retry.
"""

from __future__ import annotations

import logging

import trio

from drivers.base import DeviceError
from drivers.serial_io import SerialPort
from drivers.sutter.codec import CR, INTERRUPT

log = logging.getLogger(__name__)

BAUD = 128000
REPLY_TIMEOUT_S = 0.25
"""Per reply; 14 bytes take ~1.1 ms on the wire, an FTDI adapter may sit on them 16 ms."""
COMMAND_GAP_S = 0.002
"""The manual's quiet time between one command's reply and the next command."""
SETTLE_S = 0.02
"""How long stray bytes are waited for and dropped after a bad reply or an interrupt."""
WRITE_TIMEOUT_S = 0.25
READ_CHUNK = 64


class BadReply(DeviceError):
    """A reply of the wrong length or without its CR."""


class SutterLink:
    """The byte pipe to one controller."""

    def __init__(self, device: str, baud: int = BAUD, reply_timeout_s: float = REPLY_TIMEOUT_S):
        self.device = device
        self.baud = baud
        self.reply_timeout_s = reply_timeout_s
        self._port = SerialPort(device, log)
        self._buffer = bytearray()
        self._quiet_since = 0.0

    @property
    def is_open(self) -> bool:
        return self._port.is_open

    async def open(self) -> None:
        await self._port.open(self.baud)
        self._buffer.clear()

    async def close(self) -> None:
        await self._port.close()

    # --- transactions ----------------------------------------------------------

    async def transact(self, command: bytes, lengths: tuple[int, ...]) -> bytes:
        """Send ``command``; its reply, one of ``lengths`` bytes ending in CR.

        Only for commands that may be repeated (queries, drive selection): a
        bad reply is drained and the command sent once more.
        """
        try:
            return await self._transact_once(command, lengths)
        except BadReply as first:
            log.warning("%s: %s; retrying once", self.device, first)
            await self.settle()
        return await self._transact_once(command, lengths)

    async def _transact_once(self, command: bytes, lengths: tuple[int, ...]) -> bytes:
        await self.send_command(command)
        return await self.read_reply(lengths, self.reply_timeout_s, command)

    async def send_command(self, data: bytes) -> None:
        await self.prepare_command()
        await self.write(data)

    async def prepare_command(self) -> None:
        """Purge the input and keep the gap since the last reply: a command may follow."""
        await self._purge()
        wait = self._quiet_since + COMMAND_GAP_S - trio.current_time()
        if wait > 0:
            await trio.sleep(wait)

    async def send_interrupt(self) -> None:
        """^C, at once: it is the one byte allowed while a move runs."""
        await self.write(INTERRUPT)

    async def write(self, data: bytes) -> None:
        with trio.CancelScope(shield=True):
            await self._port.send(data, WRITE_TIMEOUT_S, _hex)
        log.debug("%s >> %s", self.device, data.hex(" "))

    async def read_reply(self, lengths: tuple[int, ...], timeout_s: float, what: bytes) -> bytes:
        """Exactly one of ``lengths`` bytes, the last a CR; BadReply if not so within ``timeout_s``.

        Shorter forms are tried first: ``K`` is (drive, CR) on old firmware and
        4 bytes on new, and no byte before the CR of the long form can be CR.
        """
        reply = b""
        with trio.move_on_after(timeout_s):
            for length in sorted(lengths):
                reply = await self._read_until(length)
                if reply[-1] == CR:
                    break
        self._quiet_since = trio.current_time()
        if len(reply) not in lengths or reply[-1] != CR:
            got = reply + bytes(self._buffer)
            self._buffer.clear()
            raise BadReply(
                f"{self.device}: reply to {what[:1]!r} was {got.hex(' ') or 'nothing'}, "
                f"not {' or '.join(map(str, lengths))} bytes ending in CR"
            )
        del self._buffer[: len(reply)]
        log.debug("%s << %s", self.device, reply.hex(" "))
        return reply

    async def wait_for_cr(self, timeout_s: float) -> bool:
        """Wait for the CR that ends a move (or answers ^C); False if none came in time.

        Other bytes before it are dropped: stray bytes have been reported
        during and after moves, and only the CR means the drive stopped.
        """
        with trio.move_on_after(timeout_s):
            while CR not in self._buffer:
                await self._receive()
            end = self._buffer.index(CR) + 1
            if end > 1:
                log.debug("%s: dropped %s before CR", self.device, self._buffer[: end - 1].hex(" "))
            del self._buffer[:end]
            self._quiet_since = trio.current_time()
            log.debug("%s << 0d", self.device)
            return True
        return False

    async def _read_until(self, length: int) -> bytes:
        while len(self._buffer) < length:
            await self._receive()
        return bytes(self._buffer[:length])

    async def settle(self, settle_s: float = SETTLE_S) -> bytes:
        """Wait ``settle_s`` for stray bytes and drop them with everything buffered."""
        with trio.move_on_after(settle_s):
            while True:
                await self._receive()
        dropped = bytes(self._buffer)
        self._buffer.clear()
        await self._purge()
        if dropped:
            log.debug("%s: dropped %s", self.device, dropped.hex(" "))
        self._quiet_since = trio.current_time()
        return dropped

    async def _purge(self) -> None:
        self._buffer.clear()
        await self._port.discard_input()

    async def _receive(self) -> None:
        self._buffer += await self._port.receive(READ_CHUNK)


def _hex(data: bytes) -> str:
    return data.hex(" ")
