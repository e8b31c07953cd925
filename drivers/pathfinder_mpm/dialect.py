"""Pathfinder MPM's HTTP vocabulary: its state document and its PutId commands."""

from __future__ import annotations

import string
from collections.abc import Sequence

import msgspec

from drivers.base import PlatformInfo
from drivers.coordinates import AxisMap
from drivers.http_common import (
    Command,
    Dialect,
    ProbeFault,
    ProbeState,
    UnusableValue,
    number_value,
)

MPM_IDS: tuple[str, ...] = (
    *string.ascii_uppercase,
    *(f"A{letter}" for letter in string.ascii_uppercase[:14]),
)
"""Pathfinder's probe ids A..Z, AA..AN; commands name a probe by its index here."""

STAGE_MM = 15.0

MPM_AXES = AxisMap(
    # native (Stage_X, Stage_Y, Stage_Z); w is a copy of Stage_Z.
    source=(0, 2, 1, 2),
    sign=(-1.0, 1.0, 1.0, -1.0),
    offset=(STAGE_MM, 0.0, 0.0, STAGE_MM),
)


class _Probe(msgspec.Struct):
    """One ProbeArray entry, its values left undecoded.

    Every key must be there: a missing key means a Pathfinder whose document is
    not the one we know, and the whole answer is nonsense. The values are
    checked one probe at a time (:func:`_probe_state`), because one probe
    reported with null fields must fail only that probe, as it did upstream,
    not every manipulator of the rig.
    """

    Id: str
    Stage_X: object
    Stage_Y: object
    Stage_Z: object
    Polar: object
    Pitch: object
    ShankOrientation: object
    ShankCount: object


class _State(msgspec.Struct):
    PosteriorAngle: float
    ProbeArray: list[_Probe]


class MpmDialect(Dialect):
    label = "Pathfinder MPM"
    info = PlatformInfo(
        name="Pathfinder MPM Control v2.8.8+",
        cli_name="pathfinder-mpm",
        axes_count=3,
        dimensions_mm=(STAGE_MM, STAGE_MM, STAGE_MM, STAGE_MM),
        tolerance_mm=0.01,
    )
    axis_map = MPM_AXES

    def parse_state(self, body: bytes) -> dict[str, ProbeState | ProbeFault]:
        state = msgspec.json.decode(body, type=_State)
        probes: dict[str, ProbeState | ProbeFault] = {}
        for probe in state.ProbeArray:
            if probe.Id not in MPM_IDS:
                raise ValueError(f"unknown probe id {probe.Id!r} (expected A..Z, AA..AN)")
            try:
                probes[probe.Id] = _probe_state(probe, state.PosteriorAngle)
            except UnusableValue as exc:
                probes[probe.Id] = ProbeFault(str(exc))
        return probes

    def step_mode_command(self, manipulator_id: str, fine: bool) -> Command:
        return {"PutId": "ProbeStepMode", "Probe": _index(manipulator_id), "StepMode": int(fine)}

    def move_command(self, manipulator_id: str, native_mm: Sequence[float]) -> Command:
        return {
            "PutId": "ProbeMotion",
            "Probe": _index(manipulator_id),
            "Absolute": 1,
            "Stereotactic": 0,
            "AxisMask": 7,
            "X": native_mm[0],
            "Y": native_mm[1],
            "Z": native_mm[2],
        }

    def insertion_command(
        self, manipulator_id: str, distance_um: float, rate_um_min: float
    ) -> Command:
        return {
            "PutId": "ProbeInsertion",
            "Probe": _index(manipulator_id),
            "Distance": distance_um,
            "Rate": rate_um_min,
        }

    def stop_command(self, manipulator_id: str) -> Command:
        return {"PutId": "ProbeStop", "Probe": _index(manipulator_id)}


def _probe_state(probe: _Probe, posterior_angle: float) -> ProbeState:
    return ProbeState(
        native_mm=(
            number_value(probe.Stage_X, "Stage_X"),
            number_value(probe.Stage_Y, "Stage_Y"),
            number_value(probe.Stage_Z, "Stage_Z"),
        ),
        angles=(
            (number_value(probe.Polar, "Polar") - posterior_angle) % 360.0,
            number_value(probe.Pitch, "Pitch"),
            number_value(probe.ShankOrientation, "ShankOrientation"),
        ),
        shank_count=max(1, round(number_value(probe.ShankCount, "ShankCount"))),
    )


def _index(manipulator_id: str) -> int:
    return MPM_IDS.index(manipulator_id)
