"""Parallax's HTTP vocabulary: stages keyed by serial number, move_type commands."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from drivers.base import PlatformInfo
from drivers.coordinates import AxisMap
from drivers.http_common import Command, Dialect, ProbeState

STAGE_MM = 15.0

PARALLAX_AXES = AxisMap(
    # native (global_X, global_Y, global_Z); w is a copy of global_Z.
    source=(0, 2, 1, 2),
    sign=(1.0, 1.0, 1.0, -1.0),
    offset=(0.0, 0.0, 0.0, STAGE_MM),
)


class _Stage(msgspec.Struct):
    """Parallax leaves fields out or null when it does not know them."""

    global_X: float | None = None
    global_Y: float | None = None
    global_Z: float | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    shank_cnt: float | None = None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class ParallaxDialect(Dialect):
    label = "Parallax"
    info = PlatformInfo(
        name="Parallax",
        cli_name="parallax",
        axes_count=3,
        dimensions_mm=(STAGE_MM, STAGE_MM, STAGE_MM, STAGE_MM),
        tolerance_mm=0.01,
    )
    axis_map = PARALLAX_AXES

    def parse_state(self, body: bytes) -> dict[str, ProbeState]:
        stages = msgspec.json.decode(body, type=dict[str, _Stage])
        return {
            serial: ProbeState(
                native_mm=(_or(s.global_X, 0.0), _or(s.global_Y, 0.0), _or(s.global_Z, 0.0)),
                angles=(_or(s.yaw, 0.0), _or(s.pitch, 90.0), _or(s.roll, 0.0)),
                shank_count=max(1, round(_or(s.shank_cnt, 1.0))),
            )
            for serial, s in stages.items()
        }

    def step_mode_command(self, manipulator_id: str, fine: bool) -> Command:
        return {"move_type": "stepMode", "stage_sn": manipulator_id, "step_mode": int(fine)}

    def move_command(self, manipulator_id: str, native_mm: Sequence[float]) -> Command:
        return {
            "move_type": "moveXYZ",
            "world": "global",
            "stage_sn": manipulator_id,
            "Absolute": 1,
            "Stereotactic": 0,
            "AxisMask": 7,
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
            "world": "global",
            "distance": distance_um,
            "rate": rate_um_min,
        }

    def stop_command(self, manipulator_id: str) -> Command:
        return {"PutId": "stop", "Probe": manipulator_id}
