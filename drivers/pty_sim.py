"""The pty half every simulated serial device shares: a port that can be pulled.

A simulator owns the master side of a pty and the driver opens the slave path
like a USB serial port, so drivers are tested through their real transport.
This module is the part that does not depend on the device's protocol: the pty's
life (open, a stable symlink re-pointed on every open the way udev names a real
device, the cable pulled and plugged back), the read loop, replies with
injectable faults (dropped, garbage first, silent, late), and the stdin control
loop of ``python -m drivers.<platform>.sim``. Each device subclasses
:class:`PtyDevice` and implements :meth:`PtyDevice.on_data`.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import logging
import os
import sys
import termios
import tty
from collections.abc import Callable, Mapping
from typing import TypeVar

import trio

log = logging.getLogger(__name__)

COMMON_VERBS = "drop [N] | garbage | close | reopen | silent on|off | quit"

_BAUD_RATES = {
    getattr(termios, f"B{rate}"): rate
    for rate in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)
}


class PtyDevice(abc.ABC):
    """A simulated device on a pty; run it with ``await nursery.start(device.run)``."""

    default_garbage = b"\x00\xff\rgarbage"

    def __init__(self, *, link: str | None = None, announce: bool = False) -> None:
        self.link = link
        self.announce = announce
        self.pty_path = ""
        self.silent = False
        self.reply_delay_s = 0.0
        self.listening_since = 0.0
        """When the read loop last began to wait: what ``on_data`` gets arrived after it
        (however late a loaded machine let the simulator read it)."""
        self._drop = 0
        self._garbage = b""
        self._master = -1
        self._slave = -1
        self._closed = trio.Event()
        self._reopen = trio.Event()
        self._opened = trio.Event()

    @property
    def path(self) -> str:
        """What the driver should open: the stable link if there is one."""
        return self.link or self.pty_path

    # --- what a device implements ------------------------------------------

    @abc.abstractmethod
    async def on_data(self, data: bytes) -> None:
        """Bytes the driver wrote; answer with :meth:`reply`. Runs on the read loop's task."""

    def power_up(self) -> None:  # noqa: B027 (optional hook; most devices need it)
        """Called on every (re)open: a plugged-back device starts from power-on state."""

    # --- fault injection -----------------------------------------------------

    def drop_next_reply(self, count: int = 1) -> None:
        self._drop += count

    def send_garbage_before_next_reply(self, data: bytes | None = None) -> None:
        self._garbage += self.default_garbage if data is None else data

    def close_device(self) -> None:
        """The USB cable is pulled: the pty vanishes (and the link with it)."""
        self._closed.set()

    def reopen_device(self) -> None:
        """The cable is plugged back in: a new pty, the link re-pointed, the device powered up."""
        self._reopen.set()

    async def wait_open(self) -> None:
        await self._opened.wait()

    def driver_baud(self) -> int | None:
        """The baud rate the driver set on its end of the pty (None if not a common rate).

        A pty carries bytes at any rate; a simulator of a device with a fixed
        rate compares this with its own to behave as a real line would.
        """
        if self._slave < 0:
            return None
        return _BAUD_RATES.get(termios.tcgetattr(self._slave)[5])

    # --- the port -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        first = True
        try:
            while True:
                self._open_pty()
                if first:
                    task_status.started(self.path)
                    first = False
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._serve)
                        await self._closed.wait()
                        nursery.cancel_scope.cancel()
                finally:
                    self._close_pty()
                self._closed = trio.Event()
                await self._reopen.wait()
                self._reopen = trio.Event()
        finally:
            self._close_pty()

    async def reply(self, data: bytes | None) -> None:
        """Write ``data`` to the driver, unless a fault says otherwise."""
        if data is None or self.silent:
            return
        if self.reply_delay_s:
            await trio.sleep(self.reply_delay_s)
        if self._drop:
            self._drop -= 1
            return
        data, self._garbage = self._garbage + data, b""
        await self.write_raw(data)

    async def write_raw(self, data: bytes) -> None:
        """Write ``data`` as is (no faults applied); a pulled cable drops it."""
        view = memoryview(data)
        while view and self._master >= 0:
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._master)
            except OSError:
                return

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.pty_path = os.ttyname(self._slave)
        if self.link:
            tmp = f"{self.link}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.pty_path, tmp)
            os.replace(tmp, self.link)
        self.power_up()
        self._opened.set()
        log.info("simulated %s on %s", type(self).__name__, self.path)
        if self.announce:
            print(f"PTY {self.path}", flush=True)

    def _close_pty(self) -> None:
        self._opened = trio.Event()
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    async def _serve(self) -> None:
        master = self._master
        while True:
            self.listening_since = trio.current_time()
            await trio.lowlevel.wait_readable(master)
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError:  # EIO: nobody has the slave open right now
                await trio.sleep(0.01)
                continue
            await self.on_data(data)


Verb = Callable[[list[str]], None]


def common_verbs(device: PtyDevice) -> dict[str, Verb]:
    """The fault-injection commands every simulator understands on stdin."""
    return {
        "drop": lambda rest: device.drop_next_reply(int(rest[0]) if rest else 1),
        "garbage": lambda rest: device.send_garbage_before_next_reply(),
        "close": lambda rest: device.close_device(),
        "reopen": lambda rest: device.reopen_device(),
        "silent": lambda rest: setattr(device, "silent", rest == ["on"]),
    }


async def control_from_stdin(
    verbs: Mapping[str, Verb], help_text: str, cancel: trio.CancelScope
) -> None:
    """Fault injection from stdin, one command a line; ``quit`` ends the simulator."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buf = b""
    async with stream:
        while data := await stream.receive_some(1024):
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                words = line.decode(errors="replace").split()
                if not words:
                    continue
                verb, rest = words[0], words[1:]
                if verb == "quit":
                    cancel.cancel()
                    return
                action = verbs.get(verb)
                try:
                    if action is None:
                        raise ValueError(verb)
                    action(rest)
                except (ValueError, IndexError, KeyError):
                    print(help_text, flush=True)


Device = TypeVar("Device", bound=PtyDevice)


def simulator_arguments(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every ``python -m drivers.<platform>.sim`` takes; add the device's own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--link", help="stable symlink to the pty, re-pointed on reopen")
    parser.add_argument("--no-stdin", action="store_true", help="ignore stdin (no fault control)")
    parser.add_argument("--debug", action="store_true")
    return parser


def run_simulator(
    args: argparse.Namespace,
    build: Callable[[argparse.Namespace], Device],
    verbs: Callable[[Device], Mapping[str, Verb]],
    help_text: str,
) -> Device | None:
    """Run ``build(args)`` on its pty, announced on stdout, with fault control on stdin.

    Returns the device once ``quit`` ended it (for a last report), None after Ctrl-C.
    """
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    async def serve() -> Device:
        device = build(args)
        async with trio.open_nursery() as nursery:
            await nursery.start(device.run)
            if not args.no_stdin:
                nursery.start_soon(
                    control_from_stdin, verbs(device), help_text, nursery.cancel_scope
                )
        return device

    with contextlib.suppress(KeyboardInterrupt):
        return trio.run(serve)
    return None
