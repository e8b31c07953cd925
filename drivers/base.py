"""The contract between a manipulator's actor (in ``ephysd``) and its driver.

Exactly one actor task owns each :class:`Manipulator`; the driver may assume it
is never used from two actors, but it must allow a position read while a move
of the same manipulator is running (the actor serves reads during moves), and it
must let ``halt`` through ahead of queued reads.

Every method that talks to hardware is bounded in time: it raises
:class:`DeviceError` (or a subclass) rather than waiting forever.

Positions cross this contract as a :data:`Vector`, a plain immutable 4-tuple of
floats, not a numpy array: what passes between actor and driver is just four
numbers, and a tuple costs nothing to import or to read. numpy is the tool for
the coordinate transforms *inside* the real drivers (:mod:`drivers.coordinates`),
which convert at their boundary; keeping it out of this module keeps it out of
any daemon that never loads such a driver (the fake rig runs without it, which
saves about 12 MiB of resident memory).
"""

from __future__ import annotations

import abc
from typing import Any

import msgspec
import trio

Vector = tuple[float, float, float, float]
"""A unified-space position in mm: (x, y, z, w), w being the depth axis."""


class DeviceError(Exception):
    """The device failed, timed out or answered nonsense; the text reaches the client."""


class DeviceLost(DeviceError):
    """The transport is gone (USB unplugged, server down): the actor should reopen it."""


class NotSupported(DeviceError):
    """The platform has no such capability (e.g. angles on Sensapex)."""


class PlatformConfigError(ValueError):
    """The platform's settings are wrong (a bad ``--port``, a bad ``[manipulators]`` table).

    Raised by ``create_platform`` (which must validate everything it is given
    before anything is opened), so the daemon exits with status 2 and one line
    before it touches a device: a systemd unit's ``RestartPreventExitStatus=2``
    then stops a restart loop that no restart could fix.
    """


class JackhammerPattern(msgspec.Struct, frozen=True):
    """One jackhammer cycle: ``phase1_steps`` steps of thrust ``phase1_pulses``,
    then ``phase2_steps`` steps of thrust ``phase2_pulses``.

    Thrust is a percentage of a full step (-100..100); positive drives forward
    (deeper on the depth axis), negative backward. The numbers are Sensapex's
    (``um_take_jackhammer_step``), which is where the mode comes from.
    """

    phase1_steps: int
    phase1_pulses: int
    phase2_steps: int
    phase2_pulses: int

    @property
    def steps(self) -> int:
        """Steps in one cycle (what a cycle's duration scales with)."""
        return self.phase1_steps + self.phase2_steps


class PlatformInfo(msgspec.Struct, frozen=True):
    """Static facts about a platform, reported by ``get_platform_info``."""

    name: str
    cli_name: str
    axes_count: int
    dimensions_mm: tuple[float, float, float, float]
    tolerance_mm: float
    # How long one halt may take here, when the daemon's default deadline is too
    # short for it (a platform that confirms a stop by watching the stage go
    # still needs seconds); 0 keeps the default. The stops on disconnect,
    # e-stop and shutdown are bounded by it too.
    halt_budget_s: float = 0.0


class PlatformOptions(msgspec.Struct, frozen=True):
    """What the command line / config file tells a platform about the rig.

    Every driver package exposes ``create_platform(options) -> Platform`` in its
    ``__init__``; the daemon picks the package by the platform's CLI name.
    """

    # --port values: "DEVICE" or "NAME=DEVICE", one manipulator each, in order.
    serial_ports: tuple[str, ...] = ()
    serial_baud: int = 250000
    http_host: str = "127.0.0.1"
    mpm_port: int = 8080
    parallax_port: int = 8081
    # Simulated rigs only.
    manipulator_count: int = 8
    # Per-manipulator tables from the config file (``[manipulators.NAME]``),
    # keyed by manipulator name; each platform validates its own keys in
    # ``create_platform`` and raises PlatformConfigError for anything wrong.
    manipulators: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class Manipulator(abc.ABC):
    """One manipulator's device, in unified space (mm, mm/s)."""

    platform_name: str = "This platform"
    """The platform's display name (``PlatformInfo.name``) for messages that
    name it; the actor that owns the manipulator sets it, so a driver written
    without a thought for jackhammer mode still refuses it by name."""

    def __init__(self, manipulator_id: str) -> None:
        self.id = manipulator_id

    def identity(self) -> str:
        """What the device said it is (model, firmware) once open; "" if it says nothing.

        ``ephysd check`` prints it, so whoever cabled the rig sees which
        controller answers on which port.
        """
        return ""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and handshake. Raises DeviceError / DeviceLost; bounded in time."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the device (host control, port). Never raises; bounded; safe to repeat."""

    @abc.abstractmethod
    async def position(self) -> Vector:
        """Current position, unified mm; 3-axis platforms fill w themselves."""

    @abc.abstractmethod
    async def move_to(self, target: Vector, speed_mm_s: float) -> Vector:
        """Drive to ``target`` and return the position where motion ended.

        Returns when the device reports the move finished (or failed: raise
        DeviceError). Cancellation means *stop*: before re-raising, halt the
        device inside ``trio.CancelScope(shield=True)`` with its own short
        deadline, so a cancelled move always leaves the hardware halted.
        3-axis platforms ignore ``target[3]``.
        """

    async def move_depth(self, depth_mm: float, speed_mm_s: float) -> float:
        """Drive the depth axis only and return the final depth.

        The default moves to the current position with w replaced; platforms
        with a native insertion command override it.
        """
        x, y, z, _ = await self.position()
        return float((await self.move_to((x, y, z, depth_mm), speed_mm_s))[3])

    @abc.abstractmethod
    async def halt(self) -> None:
        """Command the hardware to stop now. Bounded; must not queue behind reads."""

    def check_jackhammer(self) -> None:
        """Raise NotSupported unless :meth:`jackhammer` can run now; never waits.

        Asked before a jackhammer claims the manipulator, so a request the
        hardware cannot serve neither moves nor supersedes a running move.
        """
        raise NotSupported(f"{self.platform_name} does not support jackhammer mode")

    async def jackhammer(self, axis: int, cycles: int, pattern: JackhammerPattern) -> None:
        """Run ``cycles`` jackhammer cycles on the native ``axis`` (0=x 1=y 2=z 3=w/d,
        the platform's own axes, as upstream numbers them) and return when the
        device has done them.

        Bounded in time like every device call. Cancellation means *stop*, as
        for :meth:`move_to`: halt the device inside a shielded scope with its
        own short deadline before re-raising. Platforms whose hardware cannot
        do it keep this default, which refuses by the platform's name.
        """
        self.check_jackhammer()
        raise NotSupported(f"{self.platform_name} does not support jackhammer mode")

    async def angles(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees."""
        raise NotSupported(f"{type(self).__name__} does not report angles.")

    async def shank_count(self) -> int:
        raise NotSupported(f"{type(self).__name__} does not report a shank count.")


class Platform(abc.ABC):
    """A platform: its static info, its manipulators, and any shared background task."""

    info: PlatformInfo

    @abc.abstractmethod
    async def run(self, *, task_status: trio.TaskStatus[list[Manipulator]]) -> None:
        """Discover the manipulators, report them with ``task_status.started(...)``,
        then serve whatever the platform shares between manipulators (an HTTP
        state poller, say) until cancelled. Raise DeviceError before ``started``
        when the platform is unusable (no vendor software, no device): the
        daemon then exits with that one line.
        """
