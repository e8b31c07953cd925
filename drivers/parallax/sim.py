"""An emulator of Parallax's HTTP server, so the driver is tested over real HTTP.

Run it standalone with ``python -m drivers.parallax.sim --port 8081``. The
second stage reports nulls and leaves fields out, as Parallax does for a stage
it has not calibrated. Insertions move global_Z only.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.http_sim import HttpSim, SimStage, number, run_cli


@dataclass
class SimStageInfo:
    stage: SimStage
    yaw: float | None = 0.0
    pitch: float | None = 90.0
    roll: float | None = 0.0
    shank_cnt: int | None = 1
    fine: bool = False


class ParallaxSim(HttpSim):
    def __init__(
        self,
        stages: int = 3,
        *,
        coarse_speed_mm_s: float = 1.0,
        fine_speed_mm_s: float = 0.1,
    ) -> None:
        super().__init__(coarse_speed_mm_s=coarse_speed_mm_s, fine_speed_mm_s=fine_speed_mm_s)
        self.stages: dict[str, SimStageInfo] = {}
        for i in range(stages):
            info = SimStageInfo(SimStage((7.5, 7.5, 7.5)), yaw=15.0 * i, pitch=60.0, roll=2.0)
            if i == 1:
                info.yaw = info.pitch = info.roll = info.shank_cnt = None
            if i == 2:
                info.shank_cnt = 4
            self.stages[f"SN4752{i}"] = info

    def state(self) -> object:
        state: dict[str, dict[str, object]] = {}
        for serial, info in self.stages.items():
            x, y, z = info.stage.position()
            entry: dict[str, object] = {
                "sn": serial,
                "global_X": x,
                "global_Y": y,
                "global_Z": z,
                "yaw": info.yaw,
                "pitch": info.pitch,
                "roll": info.roll,
                "shank_cnt": info.shank_cnt,
            }
            # Parallax omits what it does not know rather than always sending null.
            state[serial] = {k: v for k, v in entry.items() if v is not None or k == "yaw"}
        return state

    def apply(self, command: dict[str, object]) -> None:
        if command.get("PutId") == "stop":
            self._stage(command["Probe"]).stage.stop()
            return
        info = self._stage(command["stage_sn"])
        move_type = command["move_type"]
        if move_type == "stepMode":
            info.fine = command["step_mode"] == 1
        elif move_type == "moveXYZ":
            speed = self.fine_speed_mm_s if info.fine else self.coarse_speed_mm_s
            info.stage.move_to([number(command, axis) for axis in "xyz"], speed)
        elif move_type == "insertion":
            distance_mm = number(command, "distance") / 1000.0
            rate_mm_s = number(command, "rate") / 60_000.0
            info.stage.move_by((0.0, 0.0, -distance_mm), rate_mm_s)
        else:
            raise ValueError(f"unknown move_type {move_type!r}")

    def _stage(self, serial: object) -> SimStageInfo:
        if not isinstance(serial, str):
            raise TypeError(f"stage serial must be a string, not {serial!r}")
        return self.stages[serial]


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(lambda n: ParallaxSim(n), 8081, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
