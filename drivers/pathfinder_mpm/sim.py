"""An emulator of Pathfinder MPM's HTTP server, so the driver is tested over real HTTP.

Run it standalone with ``python -m drivers.pathfinder_mpm.sim --port 8080``.
Insertions move Stage_Z only (the real stage drives along the probe's angle);
that is enough to check the depth arithmetic and completion.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from drivers.http_sim import HttpSim, SimStage, number, run_cli
from drivers.pathfinder_mpm.dialect import MPM_IDS


@dataclass
class SimProbe:
    stage: SimStage
    polar: float = 0.0
    pitch: float = 45.0
    shank_orientation: float = 0.0
    shank_count: int = 1
    fine: bool = False
    overrides: dict[str, object] = field(default_factory=dict)
    """Fields reported instead of the real ones (null positions, say), so a test
    can make one probe's state unusable while the others stay sound."""


class MpmSim(HttpSim):
    def __init__(
        self,
        probes: int = 3,
        *,
        posterior_angle: float = 0.0,
        coarse_speed_mm_s: float = 1.0,
        fine_speed_mm_s: float = 0.1,
    ) -> None:
        super().__init__(coarse_speed_mm_s=coarse_speed_mm_s, fine_speed_mm_s=fine_speed_mm_s)
        self.posterior_angle = posterior_angle
        self.probes: dict[str, SimProbe] = {
            MPM_IDS[i]: SimProbe(
                stage=SimStage((7.5, 7.5, 7.5)),
                polar=30.0 * i,
                pitch=45.0 + i,
                shank_orientation=float(i),
                shank_count=1 + 3 * (i % 2),
            )
            for i in range(probes)
        }

    def state(self) -> object:
        return {
            "PosteriorAngle": self.posterior_angle,
            "ProbeArray": [
                {
                    "Id": probe_id,
                    "Stage_X": probe.stage.position()[0],
                    "Stage_Y": probe.stage.position()[1],
                    "Stage_Z": probe.stage.position()[2],
                    "Polar": probe.polar,
                    "Pitch": probe.pitch,
                    "ShankOrientation": probe.shank_orientation,
                    "ShankCount": probe.shank_count,
                    "Visible": True,
                    **probe.overrides,
                }
                for probe_id, probe in self.probes.items()
            ],
        }

    def _probe(self, command: dict[str, object]) -> SimProbe:
        index = command["Probe"]
        if not isinstance(index, int):
            raise TypeError(f"Probe must be an index, not {index!r}")
        return self.probes[MPM_IDS[index]]

    def apply(self, command: dict[str, object]) -> None:
        probe = self._probe(command)
        put_id = command["PutId"]
        if put_id == "ProbeStepMode":
            probe.fine = command["StepMode"] == 1
        elif put_id == "ProbeMotion":
            speed = self.fine_speed_mm_s if probe.fine else self.coarse_speed_mm_s
            probe.stage.move_to([number(command, axis) for axis in "XYZ"], speed)
        elif put_id == "ProbeInsertion":
            distance_mm = number(command, "Distance") / 1000.0
            rate_mm_s = number(command, "Rate") / 60_000.0
            probe.stage.move_by((0.0, 0.0, -distance_mm), rate_mm_s)
        elif put_id == "ProbeStop":
            probe.stage.stop()
        else:
            raise ValueError(f"unknown PutId {put_id!r}")


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(lambda args: MpmSim(args.probes), 8080, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    main(sys.argv[1:])
