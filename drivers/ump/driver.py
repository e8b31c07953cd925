"""Sensapex uMp driver: blocking SDK calls in worker threads, one actor per device.

Each SDK call runs in a worker thread (``abandon_on_cancel=False``: a thread
the SDK is still using is never left behind) inside a deadline; the SDK's own
UDP timeouts (~200 ms) bound how long a cancelled call can hold on. Stop goes
straight to the device from its own thread pool, so it never queues behind
position reads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from ctypes import c_char, c_int
from typing import TypeVar

import msgspec
import numpy as np
import trio

from drivers.base import (
    DeviceError,
    DeviceLost,
    JackhammerPattern,
    Manipulator,
    NotSupported,
    Platform,
    PlatformInfo,
    Vector,
)
from drivers.coordinates import AxisMap, NativeArray
from drivers.ump.sdk import (
    JACKHAMMER_FUNCTION,
    MoveRequest,
    SdkUnavailable,
    SensapexDevice,
    SensapexSDK,
    means_device_gone,
    sdk_has,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TRAVEL_MM = 20.0
TOLERANCE_MM = 0.001
SDK_CALL_TIMEOUT_S = 2.0
START_TIMEOUT_S = 10.0
STOP_DEADLINE_S = 0.5
MOVE_POLL_S = 0.01
MOVE_LIVENESS_S = 0.5
"""During a move, how often the device is asked for its position. The SDK
learns that a move ended from the controller's status packets, so the move of
a controller that vanished never finishes: only asking notices the silence."""
POSITION_TIMEOUT_MS = 1
"""get_pos accepts the SDK's cached position when it is at most this old."""
JACKHAMMER_STEP_S = 0.05
JACKHAMMER_CYCLE_SLACK_S = 0.5
"""A jackhammer may take this long per step, plus this per cycle, plus
SDK_CALL_TIMEOUT_S: generous bounds, not the controller's speed (unpublished)."""
JACKHAMMER_POLL_S = 0.02
"""How often a running jackhammer asks the controller whether it is done."""

UMP4_AXES = AxisMap(
    # native (x, y, z, d) in mm
    source=(1, 2, 0, 3),
    sign=(1.0, -1.0, 1.0, 1.0),
    offset=(0.0, TRAVEL_MM, 0.0, 0.0),
)
UMP3_AXES = AxisMap(
    # native (x, y, z); depth is the x axis, so w is a copy of x
    source=(1, 0, 2, 0),
    sign=(1.0, -1.0, -1.0, 1.0),
    offset=(0.0, TRAVEL_MM, TRAVEL_MM, 0.0),
)
AXIS_MAPS = {3: UMP3_AXES, 4: UMP4_AXES}
DEPTH_AXIS = {3: 0, 4: 3}
"""The native axis that drives along the probe (uMp-3 has no d: x plays its part)."""

INFO = PlatformInfo(
    name="Sensapex uMp",
    cli_name="ump",
    axes_count=4,
    dimensions_mm=(TRAVEL_MM, TRAVEL_MM, TRAVEL_MM, TRAVEL_MM),
    tolerance_mm=TOLERANCE_MM,
)


async def sdk_call(
    what: str,
    fn: Callable[..., T],
    *args: object,
    deadline_s: float = SDK_CALL_TIMEOUT_S,
    limiter: trio.CapacityLimiter | None = None,
) -> T:
    """One blocking SDK call in a worker thread; any failure becomes a DeviceError.

    A failure that means the device or its link is gone becomes DeviceLost, so
    the actor takes the manipulator offline and reopens it until it answers.
    """
    try:
        with trio.fail_after(deadline_s):
            return await trio.to_thread.run_sync(
                lambda: fn(*args), abandon_on_cancel=False, limiter=limiter
            )
    except trio.TooSlowError:
        # Only a wait for a worker slot can time out (a running call is never
        # abandoned): the SDK is stuck on earlier calls to this rig.
        raise DeviceLost(f"{what}: no answer within {deadline_s:g} s") from None
    except DeviceError:
        raise
    except Exception as exc:
        error = DeviceLost if means_device_gone(exc) else DeviceError
        raise error(f"{what} failed: {type(exc).__name__}: {exc}") from None


class UmpManipulator(Manipulator):
    def __init__(
        self,
        dev_id: int,
        device: SensapexDevice,
        axes: int,
        stop_limiter: trio.CapacityLimiter,
        sdk: SensapexSDK,
    ) -> None:
        super().__init__(str(dev_id))
        self._dev_id = dev_id
        self._device = device
        # The SDK itself, for libum calls the device object has no method for;
        # jackhammer mode needs one that only Sensapex's special build has.
        self._sdk = sdk
        self._jackhammer = sdk_has(sdk, JACKHAMMER_FUNCTION)
        self._axes = axes
        self._map = AXIS_MAPS[axes]
        self._stop_limiter = stop_limiter
        self._halts = 0
        self._name = f"Sensapex uMp-{axes} {dev_id}"

    def _unified(self, native_um: Sequence[float] | None) -> Vector:
        if native_um is None or len(native_um) < self._axes:
            raise DeviceError(f"{self._name} reported position {native_um!r}")
        native_mm = np.asarray(native_um[: self._axes], dtype=np.float64) / 1000.0
        return self._map.to_unified(native_mm)

    async def _native_um(self) -> NativeArray:
        pos = await sdk_call(f"{self._name} position", self._device.get_pos, POSITION_TIMEOUT_MS)
        if len(pos) < self._axes:
            raise DeviceError(f"{self._name} reported position {pos!r}")
        return np.asarray(pos[: self._axes], dtype=np.float64)

    async def open(self) -> None:
        await self._native_um()

    async def close(self) -> None:
        return None

    async def position(self) -> Vector:
        return self._unified((await self._native_um()).tolist())

    async def angles(self) -> tuple[float, float, float]:
        raise NotSupported("Sensapex uMp does not report angles.")

    async def shank_count(self) -> int:
        raise NotSupported("Sensapex uMp does not report a shank count.")

    async def halt(self) -> None:
        self._halts += 1
        await sdk_call(
            f"{self._name} stop",
            self._device.stop,
            deadline_s=STOP_DEADLINE_S * 2,
            limiter=self._stop_limiter,
        )

    def check_jackhammer(self) -> None:
        if not self._jackhammer:
            raise NotSupported(
                f"{self.platform_name} does not support jackhammer mode with this SDK:"
                f" the loaded libum has no {JACKHAMMER_FUNCTION}"
                " (only Sensapex's special SDK build has it)."
            )

    async def jackhammer(self, axis: int, cycles: int, pattern: JackhammerPattern) -> None:
        """One libum call runs every cycle (the controller steps on its own); then
        wait, bounded, until the controller reports it idle. Any way out before
        that, a stop included, stops the device."""
        self.check_jackhammer()
        if not 0 <= axis < self._axes:
            raise DeviceError(f"{self._name} has no axis {axis}")
        limit = SDK_CALL_TIMEOUT_S + cycles * (
            pattern.steps * JACKHAMMER_STEP_S + JACKHAMMER_CYCLE_SLACK_S
        )
        try:
            await sdk_call(
                f"{self._name} jackhammer",
                self._sdk.call,
                JACKHAMMER_FUNCTION,
                c_int(self._dev_id),
                c_char(axis),
                c_int(cycles),
                c_int(pattern.phase1_steps),
                c_int(pattern.phase1_pulses),
                c_int(pattern.phase2_steps),
                c_int(pattern.phase2_pulses),
                deadline_s=limit,
            )
            await self._until_idle(limit)
        except BaseException:
            await self._stop_shielded()
            raise

    async def _until_idle(self, limit_s: float) -> None:
        # The libum call may return as soon as the controller has the command;
        # the stepping is over when the controller says it is no longer busy.
        try:
            with trio.fail_after(limit_s):
                while True:
                    if not await sdk_call(f"{self._name} status", self._device.is_busy):
                        return
                    await trio.sleep(JACKHAMMER_POLL_S)
        except trio.TooSlowError:
            raise DeviceError(
                f"{self._name} did not finish its jackhammer within {limit_s:.0f} s"
            ) from None

    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        native_um = self._map.to_native(target, self._axes) * 1000.0
        return await self._goto(native_um, speed_mm_s)

    async def move_depth(self, depth_mm: float, speed_mm_s: float) -> float:
        """Drive the depth axis alone: d on a uMp-4, x on a uMp-3."""
        native_um = await self._native_um()
        native_um[DEPTH_AXIS[self._axes]] = depth_mm * 1000.0
        return float((await self._goto(native_um, speed_mm_s))[3])

    async def _goto(self, native_um: NativeArray, speed_mm_s: float) -> Vector:
        if not (math.isfinite(speed_mm_s) and speed_mm_s > 0):
            raise DeviceError(f"Speed must be a positive number of mm/s, not {speed_mm_s!r}")
        if not np.all(np.isfinite(native_um)):
            raise DeviceError("Target position must be finite numbers")
        start_um = await self._native_um()
        distance_um = float(np.max(np.abs(native_um - start_um)))
        limit = 10.0 + 3.0 * distance_um / (speed_mm_s * 1000.0)
        halts = self._halts
        try:
            request = await sdk_call(
                f"{self._name} move",
                self._device.goto_pos,
                native_um.tolist(),
                speed_mm_s * 1000.0,
            )
            await self._until_finished(request, limit)
        except BaseException:
            await self._stop_shielded()
            raise
        if request.interrupted and self._halts == halts:
            raise DeviceError(f"{self._name} move interrupted: {request.interrupt_reason}")
        return self._unified(request.last_pos)

    async def _until_finished(self, request: MoveRequest, limit_s: float) -> None:
        # ``finished`` is a plain attribute the SDK's poller thread sets: reading it
        # never blocks, so this loop needs no worker thread and cancels at once.
        # A position read now and then raises DeviceLost if the device went silent.
        try:
            with trio.fail_after(limit_s):
                check_at = trio.current_time() + MOVE_LIVENESS_S
                while not request.finished:
                    await trio.sleep(MOVE_POLL_S)
                    if trio.current_time() >= check_at:
                        await self._native_um()
                        check_at = trio.current_time() + MOVE_LIVENESS_S
        except trio.TooSlowError:
            raise DeviceError(
                f"{self._name} did not finish its move within {limit_s:.0f} s"
            ) from None

    async def _stop_shielded(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await sdk_call(
                    f"{self._name} stop",
                    self._device.stop,
                    deadline_s=STOP_DEADLINE_S,
                    limiter=self._stop_limiter,
                )
            except DeviceError as exc:
                log.error("could not stop %s: %s", self._name, exc)


class UmpPlatform(Platform):
    """All uMp devices the SDK finds; they must all be uMp-3 or all uMp-4."""

    def __init__(self, sdk_factory: Callable[[], SensapexSDK]) -> None:
        self.info = INFO
        self._sdk_factory = sdk_factory

    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        try:
            with trio.fail_after(START_TIMEOUT_S):
                sdk = await trio.to_thread.run_sync(self._sdk_factory, abandon_on_cancel=False)
        except trio.TooSlowError:
            raise DeviceError(
                f"Sensapex SDK could not load: no answer within {START_TIMEOUT_S:g} s"
            ) from None
        except SdkUnavailable as exc:
            raise DeviceError(f"Sensapex SDK could not load: {exc}") from None
        except Exception as exc:
            raise DeviceError(f"Sensapex SDK could not load: {type(exc).__name__}: {exc}") from None
        ids = list(await sdk_call("Sensapex device discovery", sdk.list_devices))
        if not ids:
            raise DeviceError(
                "No Sensapex uMp device answered on the rig network "
                "(controllers powered and linked to this computer?)"
            )
        devices: dict[int, SensapexDevice] = {}
        axes: dict[int, int] = {}
        for dev_id in ids:
            devices[dev_id] = await sdk_call(f"Sensapex device {dev_id}", sdk.get_device, dev_id)
            axes[dev_id] = int(await sdk_call(f"Sensapex device {dev_id}", devices[dev_id].n_axes))
        axes_count = _one_kind(axes)
        self.info = msgspec.structs.replace(INFO, axes_count=axes_count)
        stop_limiter = trio.CapacityLimiter(max(4, len(ids)))
        manipulators: list[Manipulator] = [
            UmpManipulator(dev_id, devices[dev_id], axes_count, stop_limiter, sdk) for dev_id in ids
        ]
        log.info("Sensapex uMp-%d devices %s", axes_count, ", ".join(map(str, ids)))
        if not sdk_has(sdk, JACKHAMMER_FUNCTION):
            log.info("jackhammer mode unavailable: the Sensapex SDK has no %s", JACKHAMMER_FUNCTION)
        task_status.started(manipulators)
        await trio.sleep_forever()


def _one_kind(axes: dict[int, int]) -> int:
    kinds = sorted(set(axes.values()))
    unsupported = {i: n for i, n in axes.items() if n not in AXIS_MAPS}
    if unsupported:
        raise DeviceError(
            "Unsupported Sensapex devices (only uMp-3 and uMp-4): "
            + ", ".join(f"{i} has {n} axes" for i, n in unsupported.items())
        )
    if len(kinds) > 1:
        groups = "; ".join(
            f"uMp-{n}: {', '.join(str(i) for i, m in axes.items() if m == n)}" for n in kinds
        )
        raise DeviceError(f"Mixed Sensapex rig ({groups}): uMp-3 and uMp-4 cannot be used together")
    return kinds[0]
