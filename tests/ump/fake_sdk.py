"""FakeSensapexSDK: a test double of the Sensapex SDK boundary, NOT the real SDK.

It implements only the ``UMP`` / ``SensapexDevice`` / ``MoveRequest`` calls the
driver makes (``drivers/ump/sdk.py``), records every call, and moves each
device at the commanded speed in real time, like the controllers do. It is
called from the driver's worker threads, hence the lock.

``call`` looks the function up on ``lib`` first, as ``UMP.call`` does on the
ctypes library, so a libum without ``um_take_jackhammer_step`` (every public
build) fails the same way: an AttributeError. With ``jackhammer=True`` the
library has it, and the device then steps as commanded, on its own, after the
call has returned (libum calls hand the controller a command and return).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

# libum's error codes, as the real SDK's UMError.errno carries them.
LIBUM_OS_ERROR = -1
LIBUM_NOT_OPEN = -2
LIBUM_TIMEOUT = -3
LIBUM_INVALID_ARG = -4
LIBUM_INVALID_DEV = -5
LIBUM_INVALID_RESP = -6
LIBUM_PEER_ERROR = -7
_ERROR_TEXT = {
    LIBUM_NOT_OPEN: "Not opened",
    LIBUM_TIMEOUT: "Timeout",
    LIBUM_INVALID_ARG: "Invalid argument",
    LIBUM_INVALID_DEV: "Invalid device id",
    LIBUM_INVALID_RESP: "Invalid response",
    LIBUM_PEER_ERROR: "Peer failure",
}


class FakeUMError(Exception):
    """Shaped like ``sensapex.UMError``: a message, libum's ``errno`` (None for an
    operating-system error) and the OS ``oserrno`` (None otherwise)."""

    def __init__(self, msg: str, errno: int | None, oserrno: int | None) -> None:
        super().__init__(msg)
        self.errno = errno
        self.oserrno = oserrno


def um_error(errno: int, fn: str = "um_get_positions") -> FakeUMError:
    """The UMError the real SDK raises when libum returns ``errno`` from ``fn``."""
    return FakeUMError(f"UM Error: {errno:d}: '{_ERROR_TEXT[errno]}' from {fn}()", errno, None)


def um_os_error(oserrno: int) -> FakeUMError:
    """The UMError the real SDK raises when a socket call fails (LIBUM_OS_ERROR)."""
    return FakeUMError(f"UM OS Error {oserrno:d}: {os.strerror(oserrno)}", None, oserrno)


class FakeMotion:
    """What a controller is doing for one command, started now from where the
    device is: it can be interrupted (a stop, another command), which freezes it."""

    def __init__(self, device: FakeSensapexDevice) -> None:
        self._device = device
        self.start = device.position_now()
        self.t0 = time.monotonic()
        self.interrupted = False
        self.interrupt_reason: str | None = None
        self._stopped_at: list[float] | None = None

    def moving_position(self, now: float) -> list[float]:
        """Where the motion has got to at ``now`` if nothing interrupted it."""
        raise NotImplementedError

    def done(self, now: float) -> bool:
        """Whether an uninterrupted motion is over at ``now``."""
        raise NotImplementedError

    def position_at(self, now: float) -> list[float]:
        if self._stopped_at is not None:
            return list(self._stopped_at)
        return self.moving_position(now)

    def interrupt(self, reason: str) -> None:
        self._stopped_at = self.position_at(time.monotonic())
        self.interrupted = True
        self.interrupt_reason = reason

    @property
    def finished(self) -> bool:
        return self.interrupted or self.done(time.monotonic())


class FakeMoveRequest(FakeMotion):
    """Mimics sensapex.MoveRequest: finished / interrupted / interrupt_reason / last_pos."""

    def __init__(self, device: FakeSensapexDevice, target: Sequence[float], speed: float) -> None:
        super().__init__(device)
        self.target = [float(v) for v in target]
        self.speed = float(speed)

    def moving_position(self, now: float) -> list[float]:
        distance = max(abs(b - a) for a, b in zip(self.start, self.target, strict=True))
        if distance == 0 or self.speed <= 0:
            return list(self.target)
        fraction = min(1.0, self.speed * (now - self.t0) / distance)
        return [a + (b - a) * fraction for a, b in zip(self.start, self.target, strict=True)]

    def done(self, now: float) -> bool:
        if self._device.failure is not None:
            # The real SDK learns a move ended from the controller's status
            # packets: from a controller that went silent, it never does.
            return False
        return self.position_at(now) == self.target

    @property
    def last_pos(self) -> list[float] | None:
        return self.position_at(time.monotonic()) if self.finished else None


JACKHAMMER_STEP_S = 0.01
"""How long the simulated controller takes for one jackhammer step."""
JACKHAMMER_UM_PER_THRUST = 0.1
"""How far one step moves per percent of thrust."""


class FakeJackhammerRun(FakeMotion):
    """One um_take_jackhammer_step command being stepped by the controller."""

    def __init__(
        self,
        device: FakeSensapexDevice,
        axis: int,
        cycles: int,
        phases: tuple[tuple[int, int], tuple[int, int]],
    ) -> None:
        super().__init__(device)
        self.axis = axis
        self.phases = phases
        self.steps = cycles * (phases[0][0] + phases[1][0])

    def _thrust_after(self, steps: int) -> int:
        (steps1, thrust1), (steps2, thrust2) = self.phases
        per_cycle = steps1 + steps2
        if per_cycle == 0:
            return 0
        cycles, rest = divmod(steps, per_cycle)
        total = cycles * (steps1 * thrust1 + steps2 * thrust2)
        return total + min(rest, steps1) * thrust1 + max(0, rest - steps1) * thrust2

    def _steps_done(self, now: float) -> int:
        return min(self.steps, int((now - self.t0) / JACKHAMMER_STEP_S))

    def moving_position(self, now: float) -> list[float]:
        position = list(self.start)
        thrust = self._thrust_after(self._steps_done(now))
        position[self.axis] += thrust * JACKHAMMER_UM_PER_THRUST
        return position

    def done(self, now: float) -> bool:
        return self._steps_done(now) == self.steps


class FakeSensapexDevice:
    def __init__(self, sdk: FakeSensapexSDK, dev_id: int, axes: int) -> None:
        self._sdk = sdk
        self.dev_id = dev_id
        self.axes = axes
        self.resting = [10_000.0] * axes
        self.move: FakeMotion | None = None
        self.failure: FakeUMError | None = None
        """When set, every call raises it (see ``unplug``)."""

    def position_now(self) -> list[float]:
        if self.move is None:
            return list(self.resting)
        return self.move.position_at(time.monotonic())

    def place(self, position_um: Sequence[float]) -> None:
        """Test setup: put the device somewhere without a move."""
        self.resting = [float(v) for v in position_um]
        self.move = None

    def unplug(self) -> None:
        """Test hook: the controller stops answering, so libum's requests time out."""
        self.failure = um_error(LIBUM_TIMEOUT)

    def replug(self) -> None:
        self.failure = None

    def _check(self) -> None:
        failure = self.failure
        if failure is not None:
            raise FakeUMError(str(failure), failure.errno, failure.oserrno)

    def n_axes(self) -> int:
        self._sdk.record(self.dev_id, "n_axes")
        self._check()
        return self.axes

    def get_pos(self, timeout: int | None = None) -> list[float]:
        self._sdk.record(self.dev_id, "get_pos", timeout)
        self._check()
        with self._sdk.lock:
            return self.position_now()

    def goto_pos(self, pos: Sequence[float], speed: float, **options: Any) -> FakeMoveRequest:
        self._sdk.record(self.dev_id, "goto_pos", list(pos), speed)
        self._check()
        if len(pos) != self.axes:
            raise ValueError(
                f"Device #{self.dev_id} is configured for {self.axes} axes, "
                f"but target position has {len(pos)} elements."
            )
        with self._sdk.lock:
            if self.move is not None and not self.move.finished:
                self.move.interrupt("started another move before the previous finished")
            self.move = FakeMoveRequest(self, pos, speed)
            return self.move

    def is_busy(self) -> bool:
        self._sdk.record(self.dev_id, "is_busy")
        self._check()
        with self._sdk.lock:
            return self.move is not None and not self.move.finished

    def jackhammer(
        self, axis: int, cycles: int, phases: tuple[tuple[int, int], tuple[int, int]]
    ) -> None:
        """What the controller does with um_take_jackhammer_step: start stepping."""
        self._check()
        if not 0 <= axis < self.axes:
            raise um_error(LIBUM_INVALID_ARG, "um_take_jackhammer_step")
        with self._sdk.lock:
            if self.move is not None and not self.move.finished:
                self.move.interrupt("started a jackhammer before the previous motion finished")
            self.move = FakeJackhammerRun(self, axis, cycles, phases)

    def stop(self, reason: str | None = None) -> None:
        self._sdk.record(self.dev_id, "stop")
        self._check()
        with self._sdk.lock:
            if self.move is not None and not self.move.finished:
                self.move.interrupt("stop requested before move finished")

    def fail_move(self, reason: str) -> None:
        """Test hook: the controller gives up on the current move (e.g. a collision)."""
        with self._sdk.lock:
            assert self.move is not None
            self.move.interrupt(reason)


class FakeLibum:
    """Stands in for the loaded libum: the functions it exports are its attributes,
    so looking up one it lacks raises AttributeError, as on a ctypes library."""

    def __init__(self, functions: dict[str, Callable[..., int]]) -> None:
        for name, function in functions.items():
            setattr(self, name, function)


def _value(arg: Any) -> int:
    """The number a ctypes argument carries (a c_char carries one byte)."""
    value = arg.value if isinstance(arg, ctypes.c_int | ctypes.c_char) else arg
    return value[0] if isinstance(value, bytes) else int(value)


class FakeSensapexSDK:
    """Stands in for ``sensapex.UMP.get_ump()``: devices by id, with their axis count.

    ``jackhammer`` says whether its libum is Sensapex's special build, the one
    with ``um_take_jackhammer_step``.
    """

    def __init__(self, axes_by_id: dict[int, int], *, jackhammer: bool = False) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[Any, ...]] = []
        self.devices = {i: FakeSensapexDevice(self, i, n) for i, n in axes_by_id.items()}
        functions: dict[str, Callable[..., int]] = {}
        if jackhammer:
            functions["um_take_jackhammer_step"] = self._take_jackhammer_step
        self.lib = FakeLibum(functions)

    def call(self, fn: str, *args: Any) -> int:
        """As ``UMP.call``: look ``fn`` up on the library (AttributeError if it has
        none), then call it; the handle argument is implied."""
        function: Callable[..., int] = getattr(self.lib, fn)
        return function(*args)

    def _take_jackhammer_step(self, dev: Any, axis: Any, cycles: Any, *phases: Any) -> int:
        numbers = [_value(arg) for arg in (dev, axis, cycles, *phases)]
        self.record(*numbers[:1], "um_take_jackhammer_step", *numbers[1:])
        dev_id, axis_n, cycles_n, steps1, thrust1, steps2, thrust2 = numbers
        device = self.devices.get(dev_id)
        if device is None:
            raise um_error(LIBUM_INVALID_DEV, "um_take_jackhammer_step")
        device.jackhammer(axis_n, cycles_n, ((steps1, thrust1), (steps2, thrust2)))
        return 0

    def record(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def calls_named(self, name: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [c for c in self.calls if c[1] == name]

    def list_devices(self) -> list[int]:
        self.record(None, "list_devices")
        return list(self.devices)

    def get_device(self, dev_id: int) -> FakeSensapexDevice:
        self.record(dev_id, "get_device")
        if dev_id not in self.devices:
            raise ValueError(f"Invalid sensapex device ID {dev_id}.")
        return self.devices[dev_id]
