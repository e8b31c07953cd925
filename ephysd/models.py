"""The Ephys Link API's request and response shapes, as msgspec Structs.

The wire contract (``ephys-link-api.md``) is the upstream server's pydantic
models serialised with ``model_dump_json(by_alias=True)``: PascalCase keys in
declaration order, no spaces, floats always with a fraction (``20.0``), and
Unity vectors with lower-case ``x, y, z, w`` keys. msgspec produces exactly that
text, so each response is a Struct with ``rename="pascal"`` and the vectors are
plain Structs.

Requests arrive as a JSON string (what Pinpoint sends) or, as an ephysd
extension, a JSON object; with PascalCase keys or snake_case ones. All of that
is normalised and validated by :func:`decode_request`, and every way it can
fail becomes :class:`MalformedRequest`, which the API answers with
:data:`MALFORMED_REQUEST`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

MALFORMED_REQUEST: Final = json.dumps({"error": "Malformed request."})
UNKNOWN_EVENT: Final = json.dumps({"error": "Unknown event."})
ABORT_JACKHAMMER_ANSWER: Final = json.dumps({"success": True})

INSIDE_BRAIN_REFUSAL: Final = (
    'Cannot move manipulator while inside the brain. Set the depth ("set_depth") instead.'
)


def _force_floats(struct: msgspec.Struct) -> None:
    """Store every field as a float, so ``20`` goes on the wire as ``20.0``
    exactly as pydantic's float fields do, whoever built the value."""
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if type(value) is not float:
            msgspec.structs.force_setattr(struct, name, float(value))


class Vector4(msgspec.Struct, frozen=True):
    """A unified-space position in mm; depth is ``w``."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    w: float = 0.0

    def __post_init__(self) -> None:
        # Usually built from floats already (the hot path: every position read).
        if not (
            type(self.x) is float
            and type(self.y) is float
            and type(self.z) is float
            and type(self.w) is float
        ):
            _force_floats(self)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.z, self.w)

    def __str__(self) -> str:
        # The same text pydantic's BaseModel.__str__ gives, used in the
        # "did not reach" messages clients may show verbatim.
        return f"x={self.x!r} y={self.y!r} z={self.z!r} w={self.w!r}"


class Vector3(msgspec.Struct, frozen=True):
    """Angles in degrees: x = yaw, y = pitch, z = roll."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0

    def __post_init__(self) -> None:
        _force_floats(self)


def vector4(values: Any) -> Vector4:
    """A Vector4 from any 4-sequence of numbers."""
    x, y, z, w = values
    return Vector4(x=float(x), y=float(y), z=float(z), w=float(w))


# --- Requests -------------------------------------------------------------------

ManipulatorId = Annotated[str, msgspec.Meta(min_length=1)]
Speed = Annotated[float, msgspec.Meta(gt=0)]


class SetPositionRequest(msgspec.Struct, frozen=True, rename="pascal"):
    manipulator_id: ManipulatorId
    position: Vector4
    speed: Speed


class SetDepthRequest(msgspec.Struct, frozen=True, rename="pascal"):
    manipulator_id: ManipulatorId
    depth: float
    speed: Speed


class SetInsideBrainRequest(msgspec.Struct, frozen=True, rename="pascal"):
    manipulator_id: ManipulatorId
    inside: bool


# Bounds of a jackhammer request. Upstream hands whatever arrives to the SDK;
# thrust is a percentage of a step, and a cap on steps and cycles keeps every
# run bounded in time (1000 default cycles take minutes, not hours).
MAX_JACKHAMMER_CYCLES: Final = 1000
MAX_JACKHAMMER_STEPS: Final = 1000
Thrust = Annotated[int, msgspec.Meta(ge=-100, le=100)]
Steps = Annotated[int, msgspec.Meta(ge=0, le=MAX_JACKHAMMER_STEPS)]
Cycles = Annotated[int, msgspec.Meta(ge=0, le=MAX_JACKHAMMER_CYCLES)]


class JackhammerRequest(msgspec.Struct, frozen=True, rename="pascal"):
    """Upstream 2.3.6's jackhammer arguments; every key optional, with its default.

    ``axis`` -1 means the platform's depth axis. An empty ``manipulator_id``
    (the default) names no manipulator and is answered as an unknown one.
    """

    manipulator_id: str = ""
    axis: Annotated[int, msgspec.Meta(ge=-1, le=3)] = -1
    iterations: Cycles = 10
    phase1_steps: Steps = 10
    phase1_pulses: Thrust = 15
    phase2_steps: Steps = 5
    phase2_pulses: Thrust = -15
    closed_loop: bool = False
    target_um: Annotated[float, msgspec.Meta(ge=-1e9, le=1e9)] = 0.0
    max_iterations: Cycles = 50


class MalformedRequest(ValueError):
    """A request that could not be decoded or failed validation; the text says why."""


RequestT = TypeVar(
    "RequestT", SetPositionRequest, SetDepthRequest, SetInsideBrainRequest, JackhammerRequest
)


def _pascal(key: str) -> str:
    if "_" not in key and key[:1].isupper():
        return key
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def decode_request(data: Any, request_type: type[RequestT]) -> RequestT:
    """Decode and validate one request argument.

    ``data`` is the raw Socket.IO argument: a JSON string, or a JSON object
    already decoded by the transport. Top-level keys may be snake_case; vector
    keys are the lower-case Unity ones. Numbers given as numeric strings are
    accepted, as pydantic's lax mode accepts them upstream.
    """
    if data is None:
        raise MalformedRequest("missing argument")
    if isinstance(data, str | bytes):
        if not data:
            raise MalformedRequest("empty argument")
        try:
            data = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise MalformedRequest(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedRequest(f"expected a JSON object, got {type(data).__name__}")
    normalised = {_pascal(k) if isinstance(k, str) else k: v for k, v in data.items()}
    try:
        return msgspec.convert(normalised, request_type, strict=False)
    except msgspec.ValidationError as exc:
        raise MalformedRequest(str(exc)) from None


def decode_manipulator_id(data: Any) -> str:
    """The plain manipulator-id argument of get_position, stop and friends.

    Upstream sends a bare string; a number is read as its decimal text. An
    empty or missing id is malformed.
    """
    if data is None:
        raise MalformedRequest("missing argument")
    if isinstance(data, bool) or not isinstance(data, str | int):
        raise MalformedRequest(f"expected a manipulator id string, got {type(data).__name__}")
    text = str(data)
    if not text:
        raise MalformedRequest("empty manipulator id")
    return text


# --- Responses ------------------------------------------------------------------


class PinpointIdResponse(msgspec.Struct, frozen=True):
    """Both spellings on purpose: the public proxy reads ``pinpoint_id`` and
    ``is_requester`` (snake_case), newer clients read the PascalCase keys. One
    object carrying both is readable by either; each ignores the other pair."""

    PinpointId: str
    IsRequester: bool
    pinpoint_id: str
    is_requester: bool


class PlatformInfoResponse(msgspec.Struct, frozen=True, rename="pascal"):
    name: str
    cli_name: str
    axes_count: int
    dimensions: Vector4


class GetManipulatorsResponse(msgspec.Struct, frozen=True, rename="pascal"):
    manipulators: list[str] = msgspec.field(default_factory=list)
    error: str = ""


class PositionalResponse(msgspec.Struct, frozen=True, rename="pascal"):
    position: Vector4 = Vector4()
    error: str = ""


class AngularResponse(msgspec.Struct, frozen=True, rename="pascal"):
    angles: Vector3 = Vector3()
    error: str = ""


class ShankCountResponse(msgspec.Struct, frozen=True, rename="pascal"):
    shank_count: int = 1
    error: str = ""


class SetDepthResponse(msgspec.Struct, frozen=True, rename="pascal"):
    depth: float = 0.0
    error: str = ""

    def __post_init__(self) -> None:
        if type(self.depth) is not float:
            msgspec.structs.force_setattr(self, "depth", float(self.depth))


class BooleanStateResponse(msgspec.Struct, frozen=True, rename="pascal"):
    state: bool = False
    error: str = ""


StopReason = Literal["target_reached", "backward_movement", "max_iterations", "aborted"]
"""Why a closed-loop jackhammer ended, in upstream's words."""


class ClosedLoopReport(msgspec.Struct, frozen=True):
    """What a closed-loop jackhammer adds to its answer."""

    iterations_used: int
    stop_reason: StopReason
    advancement_um: float


class JackhammerOutcome(msgspec.Struct, frozen=True):
    """A jackhammer's result: where the probe ended, and the closed loop's report."""

    position: Vector4
    closed_loop: ClosedLoopReport | None = None


# Upstream's answer when it has no position (a failure): integer zeros.
_NO_POSITION: Final = {"x": 0, "y": 0, "z": 0, "w": 0}


def jackhammer_answer(outcome: JackhammerOutcome | None, error: str) -> str:
    """The jackhammer ack, key for key and spacing for spacing as upstream builds it.

    Upstream assembles this one answer by hand and writes it with
    ``json.dumps`` (``", "`` and ``": "``), unlike every other answer; the
    closed-loop keys come only with a closed loop's report.
    """
    body: dict[str, Any] = {
        "Position": msgspec.structs.asdict(outcome.position) if outcome else _NO_POSITION,
        "Error": error,
    }
    report = outcome.closed_loop if outcome else None
    if report is not None:
        body["IterationsUsed"] = report.iterations_used
        body["StopReason"] = report.stop_reason
        body["AdvancementUm"] = report.advancement_um
    return json.dumps(body)


_encoder = msgspec.json.Encoder()


def to_json(response: msgspec.Struct) -> str:
    """The exact wire text of a response (compact, keys in declaration order)."""
    return _encoder.encode(response).decode()
