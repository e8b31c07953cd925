"""The emergency stop: a serial push button (``--estop DEVICE``) and SIGUSR1.

Both end in the daemon's ``on_press`` coroutine, which cancels every move and
halts every device. The button is read as a Trio task, so a press reaches
``on_press`` as soon as its line arrives (upstream polled every 50 ms from a
thread). An e-stop that silently died is worse than none: when the button's
port vanishes the loss is logged at ERROR, and the task keeps reopening it
for as long as the daemon runs.

Without a device (``estop = true`` or ``"auto"``) the button is the first port
``ephysd ports`` marks as an e-stop candidate: one rule for both
(:func:`ephysd.ports.is_estop_candidate`).

Wiring in the daemon's root nursery (both before reporting READY)::

    await nursery.start(run_estop, estop_device(settings), emergency_stop)  # with --estop
    await nursery.start(run_sigusr1_estop, emergency_stop)                  # always
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn

import trio

from drivers.base import DeviceError
from ephysd.ports import PortLike, estop_candidates, system_ports

log = logging.getLogger(__name__)

OnPress = Callable[[str], Awaitable[None]]

BAUD = 9600
FIRST_OPEN_TIMEOUT_S = 5.0
RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0
STILL_DOWN_LOG_EVERY_S = 30.0
MAX_LINE_BYTES = 256
"""A button that sends this much without a newline is babbling: treat it as a press."""


class EStopState:
    """Whether the button is armed, for whoever shows the rig (the rig page).

    ``run_estop`` keeps it current; a daemon without ``--estop`` leaves it
    unconfigured.
    """

    __slots__ = ("armed", "configured", "device")

    def __init__(self) -> None:
        self.configured = False
        self.armed = False
        self.device = ""

    def set(self, device: str, armed: bool) -> None:
        self.configured = True
        self.device = device
        self.armed = armed


class EStopUnavailable(DeviceError):
    """The button cannot be armed at start-up (no such port, no Arduino found)."""


def find_estop_button(ports: Iterable[PortLike] | None = None) -> str:
    """The button's device for ``estop = true`` / ``"auto"``: the first port ``ephysd ports``
    marks as an e-stop candidate (an Arduino by USB vendor id or by name)."""
    listed = system_ports() if ports is None else list(ports)
    candidates = estop_candidates(listed)
    if candidates:
        return candidates[0]
    seen = ", ".join(f"{p.device} ({p.description})" for p in listed) or "none"
    raise EStopUnavailable(
        f"No e-stop button found: no serial port looks like an Arduino (ports: {seen}); "
        "see `ephysd ports`, or name it with --estop DEVICE"
    )


async def run_estop(
    device: str | None,
    on_press: OnPress,
    *,
    baud: int = BAUD,
    first_open_timeout: float = FIRST_OPEN_TIMEOUT_S,
    state: EStopState | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Call ``on_press(line)`` for every line the button sends, forever.

    Raises EStopUnavailable before ``started()`` if the port cannot be opened
    within ``first_open_timeout``: the operator asked for an e-stop, so the
    daemon must not come up without one.
    """
    path = device if device is not None else find_estop_button()
    # Found by the candidate rule: after a replug it may come back under another name.
    port = _ButtonPort(path, baud, rediscover=device is None)
    try:
        with trio.fail_after(first_open_timeout):
            stream = await port.open_retrying()
    except trio.TooSlowError:
        raise EStopUnavailable(
            f"E-stop button port {path} cannot be opened: {port.last_error}"
        ) from None
    state = state or EStopState()
    log.info("e-stop button armed on %s", path)
    state.set(port.path, armed=True)
    task_status.started()
    while True:
        try:
            reason = await _read_presses(stream, port.path, on_press)
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()
        state.set(port.path, armed=False)
        log.error(
            "E-STOP BUTTON LOST: port %s vanished (%s); reopening it. Until then stop "
            "from the client or with SIGUSR1",
            port.path,
            reason,
        )
        stream = await port.open_retrying()
        log.warning("e-stop button port %s is back; e-stop armed again", port.path)
        state.set(port.path, armed=True)


class _ButtonPort:
    """Opens the button's port, retrying with backoff; remembers why it last failed."""

    def __init__(self, path: str, baud: int, *, rediscover: bool = False) -> None:
        self.path = path
        self.baud = baud
        self.rediscover = rediscover
        self.last_error = "not tried yet"

    async def open_retrying(self) -> trio.abc.ReceiveStream:
        delay = RETRY_MIN_S
        last_logged = trio.current_time()
        while True:
            stream = await self._try_open()
            if stream is not None:
                return stream
            if trio.current_time() - last_logged >= STILL_DOWN_LOG_EVERY_S:
                log.error(
                    "e-stop button port %s still cannot be opened: %s", self.path, self.last_error
                )
                last_logged = trio.current_time()
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _try_open(self) -> trio.abc.ReceiveStream | None:
        if self.rediscover:
            try:
                self.path = find_estop_button()
            except EStopUnavailable as exc:
                self.last_error = str(exc)
                return None
        import trio_serial

        stream: trio.abc.ReceiveStream = trio_serial.SerialStream(self.path, baudrate=self.baud)
        try:
            await stream.aopen()  # type: ignore[attr-defined]
        except OSError as exc:
            self.last_error = f"{type(exc).__name__}: {exc.strerror or exc}"
            return None
        return stream


async def _read_presses(stream: trio.abc.ReceiveStream, path: str, on_press: OnPress) -> str:
    """Serve presses until the port fails; return why it failed."""
    pending = bytearray()
    while True:
        try:
            data = await stream.receive_some(MAX_LINE_BYTES)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            return f"{type(exc).__name__}: {exc}"
        if not data:
            return "end of file"
        pending += data
        while (end := pending.find(b"\n")) >= 0 or len(pending) >= MAX_LINE_BYTES:
            cut = end if end >= 0 else len(pending)
            line = bytes(pending[:cut]).decode("utf-8", "replace").strip()
            del pending[: cut + 1]
            await _press(on_press, f"e-stop button on {path}", line)


async def _press(on_press: OnPress, source: str, line: str) -> None:
    started = trio.current_time()
    try:
        await on_press(line)
    except Exception:
        log.critical("EMERGENCY STOP from %s (%r) FAILED", source, line, exc_info=True)
        return
    took_ms = (trio.current_time() - started) * 1000
    log.critical("EMERGENCY STOP from %s (%r): handled in %.1f ms", source, line, took_ms)


async def run_sigusr1_estop(
    on_press: OnPress,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """SIGUSR1 (a foot switch, a script: ``kill -USR1 PID``) is the same emergency stop.

    Must run in the main thread, as Trio's signal handling requires.
    """
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        task_status.started()
        async for _ in signals:
            await _press(on_press, "SIGUSR1", "SIGUSR1")
    raise AssertionError("signal receiver ended")  # pragma: no cover
