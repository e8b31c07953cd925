"""Parallax's HTTP vocabulary, read from Parallax's own source (releases 1.4.0-1.16.2).

Parallax for New Scale sits between us and Pathfinder MPM: it serves its own
view of the stages on ``GET /`` and turns ``move_type`` commands on ``PUT /``
into Pathfinder's commands. What that means here:

- A PUT is answered 200 with an empty body whatever became of it: a body
  without ``move_type`` (upstream Ephys Link's ``{"PutId": "stop", ...}``), an
  unknown serial, a global move for a stage without calibration are logged by
  Parallax and dropped. So a stop is ``{"move_type": "stop", "stage_sn": SN}``
  and is confirmed by its effect (:data:`STOP_CHECK`); a position move for a
  stage Parallax has not calibrated is refused here, before anything is sent.
- GET comes in two shapes, told apart per answer because Parallax may be
  restarted or upgraded under a running daemon: flat ``{SN: {...}}`` in mm
  (1.4.0-1.15.1) and nested ``{"status", "selected_sn", "probes": {SN: {"obj":
  {...}, "is_calib", "calib_info"}}}`` in um (1.16.0 on). 1.4.0 refreshes only
  the stage selected in Pathfinder, so it is refused with the version needed.
- Parallax refreshes what it serves every 0.5 s while idle, every 0.1 s while
  a stage moves, and, in 1.5.1-1.15.1, every 1 s from start-up until the
  first movement. Stillness is judged over :data:`STILL_S`, longer than that.

Departures from upstream's binding (ephys-link 2.3.6), each on purpose:

- **w is the stage's own Z** (``stage_Z`` in mm, ``obj.stage_z`` / 1000), the
  axis an insertion drives along, not 15 - global Z. It equals what the
  Pathfinder MPM platform reports as w for the same stage. Upstream's w moves
  by only cos(tilt) per mm of insertion, and its set_depth compares the depth
  with global Z while reporting 15 - global Z, so on a tilted probe it goes
  too short or too far; here a depth move ends at the requested w.
- The insertion carries no ``world``: Parallax 1.4.0-1.10.0 scaled a "global"
  distance by the calibration's scale, later versions ignore it; a distance
  along the stage's own Z is what w measures.
- A move is ``moveXYZ`` with ``world`` "global" and nothing else: Parallax
  never reads upstream's ``Absolute``/``Stereotactic``/``AxisMask``.
- Angles pass through unrounded (upstream truncates them with int()), and only
  a null or missing pitch means 90 (upstream also turns a pitch of 0 into 90).
- A move has ended at its target or once the served position has stood still
  for :data:`STILL_S`; upstream gives up after 10 unchanged reads 1/30 s
  apart, a third of a second, less than one of Parallax's refreshes.
- The stop shape and its confirmation, above; upstream's stop never reached a
  stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import msgspec

from drivers.base import PlatformInfo
from drivers.coordinates import AxisMap
from drivers.http_common import (
    PUT_LIMIT_S,
    Command,
    Dialect,
    ProbeFault,
    ProbeState,
    StopCheck,
    UnusableValue,
    VendorStateError,
    number_value,
)

STAGE_MM = 15.0
NEEDED_VERSION = "1.5.1"

STILL_S = 1.2
"""Unchanged positions mean a still stage only after this long: Parallax's
slowest refresh is 1 s (1.5.1-1.15.1, before anything has moved since it
started), plus its own GET to Pathfinder and timer jitter."""

STOP_CHECK = StopCheck(settle_s=STILL_S, still_s=STILL_S, attempts=2, limit_s=3 * STILL_S)
"""A stopped stage's served position stops changing within about 1 s (two 0.5 s
refreshes; Parallax's slowest refresh, 1 s, with the same margin as
:data:`STILL_S`); a stop that did not take is sent once more. The limit leaves
the retry time to stand still for ``still_s`` after a first attempt that gave
up late."""

PARALLAX_AXES = AxisMap(
    # native (global_X, global_Y, global_Z, stage_X, stage_Y, stage_Z), mm:
    # x, y, z are Parallax's global (reticle) frame, w the stage's own Z.
    source=(0, 2, 1, 5),
    sign=(1.0, 1.0, 1.0, 1.0),
    offset=(0.0, 0.0, 0.0, 0.0),
)

UNCALIBRATED = (
    "Parallax has no calibration for this stage, and it drops a move in global "
    "coordinates for such a stage; calibrate the stage in Parallax first"
)
NO_LOCAL_Z = "Parallax reports no stage Z for this stage, so the depth is unknown"


class _Served(NamedTuple):
    """One stage's values as either shape serves them, undecoded."""

    positions: tuple[tuple[str, object], ...]
    """(name, value) of global X, Y, Z, then the stage's own X, Y, Z."""
    mm_per_unit: float
    calibrated: object
    angles: tuple[object, object, object]
    shank_cnt: object


FLAT_POSITIONS = ("global_X", "global_Y", "global_Z", "stage_X", "stage_Y", "stage_Z")
ANGLES = ("yaw", "pitch", "roll")
NESTED_POSITIONS = (
    "stage_x_global",
    "stage_y_global",
    "stage_z_global",
    "stage_x",
    "stage_y",
    "stage_z",
)


class _FlatStage(msgspec.Struct):
    """One stage of the flat shape (1.4.0-1.15.1), values in mm, left undecoded."""

    stage_X: object = None
    stage_Y: object = None
    stage_Z: object = None
    global_X: object = None
    global_Y: object = None
    global_Z: object = None
    relative_X: object = msgspec.UNSET
    """Present from 1.5.1 on: its absence marks 1.4.0."""
    yaw: object = None
    pitch: object = None
    roll: object = None
    shank_cnt: object = None
    is_calibrated: object = None
    """1.15.1 only; earlier a stage without calibration has null globals."""

    def served(self) -> _Served:
        return _Served(
            positions=tuple((name, getattr(self, name)) for name in FLAT_POSITIONS),
            mm_per_unit=1.0,
            calibrated=self.is_calibrated,
            angles=(self.yaw, self.pitch, self.roll),
            shank_cnt=self.shank_cnt,
        )


class _StageObj(msgspec.Struct):
    """``obj`` of the nested shape (1.16.0 on): Parallax's StageObj, values in um."""

    stage_x: object = None
    stage_y: object = None
    stage_z: object = None
    stage_x_global: object = None
    stage_y_global: object = None
    stage_z_global: object = None
    yaw: object = None
    pitch: object = None
    roll: object = None
    shank_cnt: object = None


class _NestedProbe(msgspec.Struct):
    obj: _StageObj
    is_calib: object = None

    def served(self) -> _Served:
        o = self.obj
        return _Served(
            positions=tuple((f"obj.{name}", getattr(o, name)) for name in NESTED_POSITIONS),
            mm_per_unit=0.001,
            calibrated=self.is_calib,
            angles=(o.yaw, o.pitch, o.roll),
            shank_cnt=o.shank_cnt,
        )


class _Nested(msgspec.Struct):
    status: object
    probes: dict[str, _NestedProbe] = msgspec.field(default_factory=dict)
    message: object = None


class ParallaxDialect(Dialect):
    label = "Parallax"
    info = PlatformInfo(
        name="Parallax for New Scale",
        cli_name="parallax",
        axes_count=3,
        dimensions_mm=(STAGE_MM, STAGE_MM, STAGE_MM, STAGE_MM),
        tolerance_mm=0.01,
        # Every confirming attempt, plus a stop's wait behind the PUT already on the wire.
        halt_budget_s=STOP_CHECK.limit_s + PUT_LIMIT_S,
    )
    axis_map = PARALLAX_AXES
    # Parallax changes what it serves at most every 0.1 s.
    poll_interval_s = 0.05
    still_s = STILL_S
    stop_check = STOP_CHECK

    def parse_state(self, body: bytes) -> dict[str, ProbeState | ProbeFault]:
        document = msgspec.json.decode(body)
        if not isinstance(document, dict):
            raise ValueError("expected a JSON object")
        if "status" in document and (
            isinstance(document.get("probes"), dict) or document["status"] != "success"
        ):
            return _parse_nested(msgspec.convert(document, type=_Nested))
        return _parse_flat(msgspec.convert(document, type=dict[str, _FlatStage]))

    def get_failure(self, status: int, body: bytes) -> str:
        # 1.16+ answers an exception with 500 and {"status": "error", "message": ...}.
        try:
            answer = msgspec.json.decode(body, type=_Nested)
        except msgspec.DecodeError:
            return f"answered HTTP {status} to GET"
        return f"reports an error (HTTP {status}): {_message(answer)}"

    def step_mode_command(self, manipulator_id: str, fine: bool) -> Command:
        return {"move_type": "stepMode", "stage_sn": manipulator_id, "step_mode": int(fine)}

    def move_command(self, manipulator_id: str, native_mm: Sequence[float]) -> Command:
        return {
            "move_type": "moveXYZ",
            "world": "global",
            "stage_sn": manipulator_id,
            "x": native_mm[0],
            "y": native_mm[1],
            "z": native_mm[2],
        }

    def insertion_command(
        self, manipulator_id: str, distance_um: float, rate_um_min: float
    ) -> Command:
        return {
            "move_type": "insertion",
            "stage_sn": manipulator_id,
            "distance": distance_um,
            "rate": rate_um_min,
        }

    def stop_command(self, manipulator_id: str) -> Command:
        return {"move_type": "stop", "stage_sn": manipulator_id}


def _message(answer: _Nested) -> str:
    text = answer.message if isinstance(answer.message, str) else "no message"
    return text if len(text) <= 200 else text[:197] + "..."


def _parse_flat(stages: dict[str, _FlatStage]) -> dict[str, ProbeState | ProbeFault]:
    if any(stage.relative_X is msgspec.UNSET for stage in stages.values()):
        raise VendorStateError(
            "serves stages without relative_X, as Parallax 1.4.0 does, which after start-up "
            "refreshes only the stage selected in Pathfinder; ephysd needs Parallax for "
            f"New Scale {NEEDED_VERSION} or newer"
        )
    return _states({serial: stage.served() for serial, stage in stages.items()})


def _parse_nested(answer: _Nested) -> dict[str, ProbeState | ProbeFault]:
    if answer.status != "success":
        raise VendorStateError(f"reports an error: {_message(answer)}")
    return _states({serial: probe.served() for serial, probe in answer.probes.items()})


def _states(stages: Mapping[str, _Served]) -> dict[str, ProbeState | ProbeFault]:
    """Each stage's state; a stage with a value that is not a number fails alone."""
    result: dict[str, ProbeState | ProbeFault] = {}
    for serial, served in stages.items():
        try:
            result[serial] = _stage_state(served)
        except UnusableValue as exc:
            result[serial] = ProbeFault(str(exc))
    return result


def _stage_state(served: _Served) -> ProbeState:
    """One stage, in mm. Null means unknown: positions 0 as upstream, and no move
    that would need the unknown value. Globals of a stage Parallax says is not
    calibrated are stale (it stops updating them), so they count as unknown."""
    values = [_optional(value, name) for name, value in served.positions]
    if served.calibrated is False:
        values[0:3] = [None, None, None]
    native = tuple(0.0 if v is None else v * served.mm_per_unit for v in values)
    yaw, pitch, roll = (_optional(v, name) for v, name in zip(served.angles, ANGLES, strict=True))
    shanks = _optional(served.shank_cnt, "shank_cnt")
    return ProbeState(
        native_mm=native,
        angles=(
            0.0 if yaw is None else yaw,
            90.0 if pitch is None else pitch,
            0.0 if roll is None else roll,
        ),
        shank_count=1 if shanks is None else max(1, round(shanks)),
        move_refusal=UNCALIBRATED if None in values[0:3] else "",
        depth_refusal=NO_LOCAL_Z if values[5] is None else "",
    )


def _optional(value: object, name: str) -> float | None:
    return None if value is None else number_value(value, name)
