"""An emulator of Parallax for New Scale's HTTP server, era by era.

Run it standalone with ``python -m drivers.parallax.sim --port 8081 --era 1.16``.

It does what Parallax's own source does (``stage_http_server.py``,
``stage_controller.py``, ``stage_listener.py``, releases 1.4.0-1.16.2), so the
driver is tested against the real application's behaviour, not against our
idea of it:

- PUT: a body that is not JSON is answered 400; one that is JSON but not an
  object, or has non-numeric coordinates, 500. Everything else is answered
  200 with an empty body, whatever became of it: no ``move_type`` (upstream's
  ``{"PutId": "stop"}``), an unknown one, an unknown serial, missing values, a
  global move for a stage without calibration are logged (``dropped``) and
  ignored. ``stop``/``stopAll`` halt, ``moveXYZ`` drives to a point (global,
  through the stage's calibration, or the stage's own mm), ``moveXY0`` only
  retracts Z (its X/Y timer never runs for an HTTP request), ``insertion``
  drives along the stage's own Z (positive deeper) and ``stepMode`` picks
  the speed of later moves.
- GET serves what Parallax's listener last read from Pathfinder, refreshed at
  its cadence: every 0.5 s while idle (1 s from start-up until the first
  movement in the flat eras), every 0.1 s while a stage moves, back to 0.5 s
  after 0.5 s without movement. The era picks the shape: "1.4" (flat without
  ``relative_*``, and only the selected stage refreshed after the first
  poll), "1.5" (flat, 1.5.1-1.12.0), "1.15" (flat, no ``shank_cnt``,
  ``is_calibrated``), "1.16" (nested, um, from 1.16.0 on).

Stages: SN47520 is calibrated and vertical, SN47521 has no calibration (no
global coordinates, no pitch), SN47522 is calibrated and tilted 29.5 degrees
from vertical with four shanks; more repeat that pattern. Their own axes are
Parallax's local ones (mm, z growing with insertion: 15 - Pathfinder's
Stage_Z).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt
import trio

from drivers.http_sim import JSON, HttpSim, Reply, SimStage, run_cli

log = logging.getLogger(__name__)

ERAS = ("1.4", "1.5", "1.15", "1.16")
FLAT_ERAS = ("1.4", "1.5", "1.15")
START_PERIOD_S = {"1.4": 1.0, "1.5": 1.0, "1.15": 1.0, "1.16": 0.5}
"""The listener's period from start-up: 1.5.1-1.15.1 start their timer at 1 s."""
IDLE_PERIOD_S = 0.5
MOVING_PERIOD_S = 0.1
IDLE_AFTER_S = 0.5
MOVED_MM = {"1.4": 0.001, "1.5": 0.001, "1.15": 0.002, "1.16": 0.002}
"""How far a stage must go between two polls to count as moving."""
CENTER_MM = (7.5, 7.5, 7.5)
TEXT = "text/plain; charset=utf-8"
SERVER_ERROR: Reply = (500, b"500 Internal Server Error\n\nServer got itself in trouble", TEXT)

Array = npt.NDArray[np.float64]


class Calibration:
    """A stage's rigid map between Parallax's global frame and its own axes (mm):
    local = R @ global + t. A tilt turns the stage's Z away from the vertical, so
    an insertion changes global Z by only cos(tilt) of its length."""

    def __init__(self, tilt_deg: float, global_at_center: Sequence[float]) -> None:
        angle = math.radians(180.0 - tilt_deg)  # the stage's Z points down into the brain
        c, s = math.cos(angle), math.sin(angle)
        self.rotation: Array = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
        self.translation: Array = np.asarray(CENTER_MM) - self.rotation @ np.asarray(
            global_at_center, dtype=np.float64
        )

    def to_local(self, global_mm: Sequence[float]) -> Array:
        return self.rotation @ np.asarray(global_mm, dtype=np.float64) + self.translation

    def to_global(self, local_mm: Sequence[float]) -> Array:
        return self.rotation.T @ (np.asarray(local_mm, dtype=np.float64) - self.translation)


@dataclass
class ParallaxStage:
    name: str
    """Pathfinder's Id (A, B, ...)."""
    stage: SimStage
    """In Parallax's local mm."""
    calibration: Calibration | None
    pitch: float | None
    """Pathfinder's Pitch, served from 1.16 on (earlier eras serve null)."""
    shank_count: int
    step_mode: int = 0
    served: tuple[float, float, float] | None = None
    """The local position as of the listener's last poll."""


class ParallaxSim(HttpSim):
    def __init__(
        self,
        stages: int = 3,
        *,
        era: str = "1.16",
        coarse_speed_mm_s: float = 1.0,
        fine_speed_mm_s: float = 0.1,
        put_delay_s: float = 0.0,
    ) -> None:
        super().__init__(coarse_speed_mm_s=coarse_speed_mm_s, fine_speed_mm_s=fine_speed_mm_s)
        if era not in ERAS:
            raise ValueError(f"era must be one of {', '.join(ERAS)}, not {era!r}")
        self.era = era
        """May change while serving: Parallax restarted as another version."""
        self.put_delay_s = put_delay_s
        """Parallax asks Pathfinder for the stage's index, then forwards: a PUT takes time."""
        self.lookup_fails = False
        """Parallax's GET to Pathfinder for a stage's index fails: every per-stage
        command (a stop too) is logged and dropped, answered 200."""
        self.get_error: str | None = None
        """1.16 on: GET raises inside and answers 500 with this message."""
        self.listener_stopped = False
        """The listener no longer reads Pathfinder, so GET serves the same positions
        while the stages move: 1.5.1-1.15.1 stop their polling timer for good after
        one poll that raised (Pathfinder not answering once is enough)."""
        self.dropped: list[str] = []
        """What Parallax logged for each command it dropped."""
        self.max_puts_at_once = 0
        self._puts_at_once = 0
        self.polls = 0
        """How often the listener has read Pathfinder (what GET serves changes only then)."""
        self.stages: dict[str, ParallaxStage] = {}
        for i in range(stages):
            self.stages[f"SN{47520 + i}"] = _stage(i)
        self._period = START_PERIOD_S[era]
        self._fast = False
        self._last_moved = -math.inf
        self._polled: dict[str, tuple[float, float, float]] = {}

    # --- the listener: what GET serves, refreshed at Parallax's cadence ----------

    def start_beside(self, nursery: trio.Nursery) -> None:
        # A Parallax that has been running a while: its first poll is done.
        self._period, self._fast = START_PERIOD_S[self.era], False
        self._poll(first=True)
        nursery.start_soon(self._listen)

    async def _listen(self) -> None:
        while True:
            await trio.sleep(self._period)
            if not self.listener_stopped:
                self._poll()

    def _poll(self, *, first: bool = False) -> None:
        self.polls += 1
        now = trio.current_time()
        positions = {serial: s.stage.position() for serial, s in self.stages.items()}
        threshold = MOVED_MM[self.era]
        moved = any(
            max(abs(a - b) for a, b in zip(position, self._polled[serial], strict=True))
            >= threshold
            for serial, position in positions.items()
            if serial in self._polled
        )
        if moved:
            self._last_moved = now
            if not self._fast:
                self._fast, self._period = True, MOVING_PERIOD_S
        elif self._fast and now - self._last_moved >= IDLE_AFTER_S:
            self._fast, self._period = False, IDLE_PERIOD_S
        self._polled = positions
        for index, (serial, stage) in enumerate(self.stages.items()):
            # 1.4.0 refreshes only Pathfinder's selected stage (the first) after start-up.
            if first or self.era != "1.4" or index == 0:
                stage.served = positions[serial]

    def state(self) -> object:
        if self.era in FLAT_ERAS:
            return {
                serial: self._flat(serial, stage)
                for serial, stage in self.stages.items()
                if stage.served is not None
            }
        return {
            "status": "success",
            "selected_sn": next(iter(self.stages), None),
            "probes": {serial: self._nested(serial, s) for serial, s in self.stages.items()},
        }

    def _globals(self, stage: ParallaxStage) -> list[float] | None:
        if stage.calibration is None or stage.served is None:
            return None
        return [float(v) for v in stage.calibration.to_global(stage.served)]

    def _flat(self, serial: str, stage: ParallaxStage) -> dict[str, object]:
        assert stage.served is not None
        x, y, z = stage.served
        g = self._globals(stage)
        entry: dict[str, object] = {
            "sn": serial,
            "name": stage.name,
            "stage_X": round(x, 4),
            "stage_Y": round(y, 4),
            "stage_Z": round(z, 4),
            "global_X": None if g is None else round(g[0], 4),
            "global_Y": None if g is None else round(g[1], 4),
            "global_Z": None if g is None else round(g[2], 4),
        }
        if self.era != "1.4":
            # Pathfinder's offsets are 0, so Parallax's Z offset is 15 mm.
            entry.update(
                relative_X=round(x, 4), relative_Y=round(y, 4), relative_Z=round(z - 15.0, 4)
            )
        entry.update(yaw=None, pitch=None, roll=None)  # nothing sets them before 1.16
        if self.era == "1.15":
            calibrated = stage.calibration is not None
            entry.update(
                bregma=None,
                is_calibrated=calibrated,
                calib_info={"detection_status": "accepted", "L2_error": 0.01}
                if calibrated
                else None,
            )
        else:
            entry["shank_cnt"] = 1
        return entry

    def _nested(self, serial: str, stage: ParallaxStage) -> dict[str, object]:
        assert stage.served is not None
        x, y, z = stage.served
        g = self._globals(stage)
        calibrated = stage.calibration is not None
        return {
            "obj": {
                "sn": serial,
                "name": stage.name,
                "stage_x": round(x * 1000, 1),
                "stage_y": round(y * 1000, 1),
                "stage_z": round(z * 1000, 1),
                "stage_x_global": None if g is None else round(g[0] * 1000, 1),
                "stage_y_global": None if g is None else round(g[1] * 1000, 1),
                "stage_z_global": None if g is None else round(g[2] * 1000, 1),
                "stage_x_offset": 0.0,
                "stage_y_offset": 0.0,
                "stage_z_offset": 15000.0,
                "stage_bregma": None,
                "yaw": None,  # Pathfinder has no Yaw or Roll
                "pitch": stage.pitch,
                "roll": None,
                "shank_cnt": stage.shank_count,
            },
            "is_calib": calibrated,
            "calib_info": {"detection_status": "accepted", "L2_err": 0.01} if calibrated else None,
        }

    # --- HTTP ------------------------------------------------------------------

    async def handle(self, method: str, path: str, body: bytes) -> Reply:
        if path.partition("?")[0] != "/":
            return 404, b"404: Not Found", TEXT
        if method == "GET":
            self.gets += 1
            if self.override_body is not None:
                return 200, self.override_body, JSON
            if self.get_error is not None and self.era not in FLAT_ERAS:
                error = {"status": "error", "message": self.get_error}
                return 500, msgspec.json.encode(error), JSON
            return 200, msgspec.json.encode(self.state()), JSON
        if method == "PUT":
            return await self._put(body)
        return 405, b"405: Method Not Allowed", TEXT

    async def _put(self, body: bytes) -> Reply:
        try:
            command = json.loads(body)
        except ValueError:
            return 400, b"Bad Request: Invalid JSON format", TEXT
        if not isinstance(command, dict):
            return SERVER_ERROR  # Parallax calls command.get() on it
        self.puts.append(command)
        self._puts_at_once += 1
        self.max_puts_at_once = max(self.max_puts_at_once, self._puts_at_once)
        try:
            await trio.sleep(self.put_delay_s)
            self.apply(command)
        except (TypeError, ValueError) as exc:
            log.warning("Parallax raised on %s: %s", body[:200], exc)
            return SERVER_ERROR
        finally:
            self._puts_at_once -= 1
        return 200, b"", TEXT

    # --- commands, as StageController.request dispatches them ---------------------

    def apply(self, command: dict[str, object]) -> None:
        move_type = command.get("move_type")
        if move_type is None:
            self._drop("No move type found in the command.")
        elif move_type == "stopAll":
            if self.lookup_fails:
                self._drop("Failed to retrieve status.")
                return
            for stage in self.stages.values():
                stage.stage.stop()
        elif move_type in ("stop", "moveXY0", "moveXYZ", "insertion", "stepMode"):
            addressed = self._stage(command.get("stage_sn"))
            if addressed is not None:
                self._per_stage(str(move_type), addressed, command)
        else:
            self._drop(f"Invalid move type: {move_type}")

    def _per_stage(self, move_type: str, stage: ParallaxStage, command: dict[str, object]) -> None:
        if move_type == "stop":
            stage.stage.stop()
        elif move_type == "stepMode":
            step_mode = command.get("step_mode", 0)
            stage.step_mode = step_mode if isinstance(step_mode, int) else 0
        elif move_type == "moveXY0":
            x, y, _ = stage.stage.position()
            stage.stage.move_to((x, y, 0.0), self.coarse_speed_mm_s)  # Pathfinder Z = 15
        elif move_type == "moveXYZ":
            self._move(stage, command)
        else:
            self._insert(stage, command)

    def _move(self, stage: ParallaxStage, command: dict[str, object]) -> None:
        point = [command.get(axis) for axis in "xyz"]
        if any(v is None for v in point):
            self._drop("X, Y, or Z coordinates are missing in the command.")
            return
        target = [_coordinate(v) for v in point]
        if command.get("world") == "global":
            if stage.calibration is None:
                self._drop(f"Transformation matrix not found for {command.get('stage_sn')}")
                return
            target = [float(v) for v in stage.calibration.to_local(target)]
        speed = self.coarse_speed_mm_s if stage.step_mode == 0 else self.fine_speed_mm_s
        stage.stage.move_to(target, speed)

    def _insert(self, stage: ParallaxStage, command: dict[str, object]) -> None:
        distance, rate = command.get("distance"), command.get("rate")
        if distance is None or rate is None:
            self._drop("Distance or Rate is not provided for insertion.")
            return
        if not (_is_number(distance) and _is_number(rate)):
            # Parallax forwards them as they are; what Pathfinder makes of it is unknown.
            self._drop(f"Pathfinder ignored an insertion of {distance!r} um at {rate!r} um/min")
            return
        assert isinstance(distance, int | float) and isinstance(rate, int | float)
        stage.stage.move_by((0.0, 0.0, distance / 1000.0), rate / 60_000.0)

    def _stage(self, serial: object) -> ParallaxStage | None:
        if self.lookup_fails:
            self._drop("Failed to retrieve status to find probe index.")
            return None
        for known, stage in self.stages.items():
            if known == serial:
                return stage
        self._drop(f"Stage serial number {serial} not found in the status.")
        return None

    def _drop(self, reason: str) -> None:
        log.warning("Parallax dropped a command: %s", reason)
        self.dropped.append(reason)


def _stage(index: int) -> ParallaxStage:
    """Stage ``index`` of the pattern: vertical, uncalibrated, tilted with four shanks."""
    name = chr(ord("A") + index)
    match index % 3:
        case 0:
            vertical = Calibration(0.0, (-1.5, 2.0, 0.5))
            return ParallaxStage(name, SimStage(CENTER_MM), vertical, 90.0, 1)
        case 1:
            return ParallaxStage(name, SimStage(CENTER_MM), None, None, 1)
        case _:
            tilted = Calibration(29.5, (2.0, -1.0, 1.0))
            return ParallaxStage(name, SimStage(CENTER_MM), tilted, 90.0 - 29.5, 4)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coordinate(value: object) -> float:
    """Parallax multiplies by 1000 and makes a float array: anything else raises (500)."""
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"coordinate {value!r} is not a number")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--era", choices=ERAS, default="1.16", help="Parallax version to act as")


def main(argv: Sequence[str] | None = None) -> None:
    run_cli(
        lambda args: ParallaxSim(args.probes, era=args.era),
        8081,
        argv,
        description=__doc__.splitlines()[0] if __doc__ else None,
        add_arguments=_add_arguments,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
