"""A serial platform's port: opening, closing, and bytes in and out, the same on every platform.

The port is locked for this process (trio-serial's ``exclusive``, an flock), so
``ephysd check`` or a second daemon cannot talk over a running one. Failures map
to the driver contract here, once: a port that cannot be opened (unplugged,
locked, no permission) or that fails under a read or write (the USB cable
pulled) is :class:`DeviceLost`, which the actor answers by reopening with
backoff; a write that does not drain in time is :class:`DeviceError`. Closing
never raises and is never cut short.
"""

from __future__ import annotations

import logging

import trio
from trio_serial import SerialStream

from drivers.base import DeviceError, DeviceLost

log = logging.getLogger(__name__)

GONE = (OSError, trio.ClosedResourceError, trio.BrokenResourceError)
"""What a stream raises when its port has vanished."""


async def open_port(device: str, baud: int) -> trio.abc.Stream:
    stream = SerialStream(device, baudrate=baud, exclusive=True)
    try:
        await stream.aopen()
    except OSError as exc:
        raise DeviceLost(f"cannot open {device}: {exc.strerror or exc}") from exc
    return stream


async def close_port(stream: trio.abc.Stream, device: str) -> None:
    with trio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except OSError as exc:
            log.debug("closing %s: %s", device, exc)


async def send(stream: trio.abc.Stream, data: bytes, device: str, timeout_s: float) -> None:
    """Write ``data`` within ``timeout_s``; the caller closes the port on DeviceLost."""
    try:
        with trio.fail_after(timeout_s):
            await stream.send_all(data)
    except trio.TooSlowError:
        raise DeviceError(f"{device}: write of {data!r} timed out") from None
    except GONE as exc:
        raise DeviceLost(f"{device} is gone: {exc}") from exc


async def receive(stream: trio.abc.Stream, device: str, max_bytes: int) -> bytes:
    """Some bytes (waits for at least one); the caller closes the port on DeviceLost."""
    try:
        data = await stream.receive_some(max_bytes)
    except GONE as exc:
        raise DeviceLost(f"{device} is gone: {exc}") from exc
    if not data:
        raise DeviceLost(f"{device} is gone (end of file)")
    return bytes(data)
