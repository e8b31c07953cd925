"""The Ephys Link API: event name and arguments in, the ack's string out.

Transport-free on purpose: the Socket.IO server, the proxy client and the tests
all call :meth:`Api.handle`. Every answer is a string, as on the wire; the
shapes and texts are those of ``ephys-link-api.md``.

Reads (position, angles, shank count) are the hot path: Pinpoint polls them
many times a second. :meth:`Api.answer` returns those as a
:class:`~protocol.server.Deferred` resolved on the actor's task, so the
Socket.IO server writes the ack from there with no hand-off back to the
handler; the request still reaches the actor only as a message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from ephysd.actor import ActorHandle, Result
from ephysd.errors import error_text, unknown_manipulator
from ephysd.models import (
    ABORT_JACKHAMMER_ANSWER,
    MALFORMED_REQUEST,
    UNKNOWN_EVENT,
    AngularResponse,
    BooleanStateResponse,
    GetManipulatorsResponse,
    JackhammerRequest,
    MalformedRequest,
    PinpointIdResponse,
    PlatformInfoResponse,
    PositionalResponse,
    SetDepthRequest,
    SetDepthResponse,
    SetInsideBrainRequest,
    SetPositionRequest,
    ShankCountResponse,
    Vector3,
    Vector4,
    decode_manipulator_id,
    decode_request,
    jackhammer_answer,
    to_json,
    vector4,
)
from ephysd.rig import Rig
from protocol.server import Deferred

log = logging.getLogger(__name__)

T = TypeVar("T")

# An event's answer: the ack text now, or later from the actor's task.
Answer = str | Deferred[str]

# The Ephys Link API level ephysd implements: upstream 2.3.6, whose events
# (jackhammer and abort_jackhammer included) it serves in full. Pinpoint
# refuses a server whose major version is not 2, so this is what get_version
# reports, not our own package version.
EPHYS_LINK_API_VERSION: Final = "2.3.6"


class Api:
    """Maps each event to a rig call and the response text."""

    def __init__(self, rig: Rig, pinpoint_id: str) -> None:
        self._rig = rig
        self.pinpoint_id = pinpoint_id
        self._handlers: dict[str, Callable[[Sequence[Any]], Awaitable[Answer]]] = {
            "get_version": self._get_version,
            "get_pinpoint_id": self._get_pinpoint_id,
            "get_platform_info": self._get_platform_info,
            "get_manipulators": self._get_manipulators,
            "get_position": self._get_position,
            "get_angles": self._get_angles,
            "get_shank_count": self._get_shank_count,
            "set_position": self._set_position,
            "set_depth": self._set_depth,
            "set_inside_brain": self._set_inside_brain,
            "jackhammer": self._jackhammer,
            "abort_jackhammer": self._abort_jackhammer,
            "stop": self._stop,
            "stop_all": self._stop_all,
        }

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    async def handle(self, event: str, args: Sequence[Any]) -> str:
        """The ack string for ``event`` called with ``args`` (request data first)."""
        answer = await self.answer(event, args)
        if isinstance(answer, Deferred):
            return await answer.wait()
        return answer

    async def answer(self, event: str, args: Sequence[Any]) -> Answer:
        """As :meth:`handle`, but a read's answer may come as a Deferred."""
        handler = self._handlers.get(event)
        if handler is None:
            log.error("unknown event %r", event)
            return UNKNOWN_EVENT
        log.debug("event %s %r", event, args)
        try:
            answer = await handler(args)
        except MalformedRequest as exc:
            shown = args[0] if args else "(no argument)"
            log.error("malformed %s request: %s; got %.200r", event, exc, shown)
            return MALFORMED_REQUEST
        except Exception as exc:
            return self._failed(event, exc)
        if not isinstance(answer, Deferred):
            log.debug("event %s answered %.500s", event, answer)
        return answer

    @staticmethod
    def _failed(event: str, exc: Exception) -> str:
        # A bug must cost this one answer, never the connection or the daemon.
        log.exception("%s failed unexpectedly", event)
        return json.dumps({"error": error_text(exc)})

    @classmethod
    async def _later(
        cls,
        event: str,
        request: Callable[[Callable[[Result[T]], None]], Awaitable[None]],
        render: Callable[[Result[T]], str],
    ) -> Deferred[str]:
        """Send a read to its actor; the answer is rendered on the actor's task."""
        answer: Deferred[str] = Deferred()

        def deliver(result: Result[T]) -> None:
            try:
                text = render(result)
            except Exception as exc:
                text = cls._failed(event, exc)
            log.debug("event %s answered %.500s", event, text)
            answer.resolve(text)

        await request(deliver)
        return answer

    # --- helpers ---------------------------------------------------------------

    @staticmethod
    def _arg(args: Sequence[Any]) -> Any:
        return args[0] if args else None

    def _handle_for(self, manipulator_id: str) -> ActorHandle | None:
        handle = self._rig.handles.get(manipulator_id)
        if handle is None:
            log.error("%s", self._unknown(manipulator_id))
        return handle

    @staticmethod
    def _unknown(manipulator_id: str) -> str:
        return error_text(unknown_manipulator(manipulator_id))

    # --- metadata ----------------------------------------------------------------

    async def _get_version(self, args: Sequence[Any]) -> str:
        return EPHYS_LINK_API_VERSION

    async def _get_pinpoint_id(self, args: Sequence[Any]) -> str:
        return to_json(
            PinpointIdResponse(
                PinpointId=self.pinpoint_id,
                IsRequester=False,
                pinpoint_id=self.pinpoint_id,
                is_requester=False,
            )
        )

    async def _get_platform_info(self, args: Sequence[Any]) -> str:
        info = self._rig.info
        return to_json(
            PlatformInfoResponse(
                name=info.name,
                cli_name=info.cli_name,
                axes_count=info.axes_count,
                dimensions=vector4(info.dimensions_mm),
            )
        )

    async def _get_manipulators(self, args: Sequence[Any]) -> str:
        return to_json(GetManipulatorsResponse(manipulators=self._rig.ids))

    # --- reads -------------------------------------------------------------------

    async def _get_position(self, args: Sequence[Any]) -> Answer:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return to_json(PositionalResponse(error=self._unknown(manipulator_id)))
        return await self._later("get_position", handle.request_position, _position_answer)

    async def _get_angles(self, args: Sequence[Any]) -> Answer:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return to_json(AngularResponse(error=self._unknown(manipulator_id)))
        return await self._later("get_angles", handle.request_angles, _angles_answer)

    async def _get_shank_count(self, args: Sequence[Any]) -> Answer:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return to_json(ShankCountResponse(error=self._unknown(manipulator_id)))
        return await self._later("get_shank_count", handle.request_shank_count, _shank_answer)

    # --- moves -------------------------------------------------------------------

    async def _set_position(self, args: Sequence[Any]) -> str:
        request = decode_request(self._arg(args), SetPositionRequest)
        handle = self._handle_for(request.manipulator_id)
        if handle is None:
            return to_json(PositionalResponse(error=self._unknown(request.manipulator_id)))
        result = await handle.move_to(request.position, request.speed)
        if result.error or result.value is None:
            return to_json(PositionalResponse(error=result.error))
        return to_json(PositionalResponse(position=result.value))

    async def _set_depth(self, args: Sequence[Any]) -> str:
        request = decode_request(self._arg(args), SetDepthRequest)
        handle = self._handle_for(request.manipulator_id)
        if handle is None:
            return to_json(SetDepthResponse(error=self._unknown(request.manipulator_id)))
        result = await handle.move_depth(request.depth, request.speed)
        if result.error or result.value is None:
            return to_json(SetDepthResponse(error=result.error))
        return to_json(SetDepthResponse(depth=result.value))

    async def _set_inside_brain(self, args: Sequence[Any]) -> str:
        request = decode_request(self._arg(args), SetInsideBrainRequest)
        handle = self._handle_for(request.manipulator_id)
        if handle is None:
            return to_json(BooleanStateResponse(error=self._unknown(request.manipulator_id)))
        result = await handle.set_inside_brain(request.inside)
        if result.error or result.value is None:
            return to_json(BooleanStateResponse(error=result.error))
        return to_json(BooleanStateResponse(state=result.value))

    async def _jackhammer(self, args: Sequence[Any]) -> str:
        request = decode_request(self._arg(args), JackhammerRequest)
        handle = self._handle_for(request.manipulator_id)
        if handle is None:
            return jackhammer_answer(None, self._unknown(request.manipulator_id))
        result = await handle.jackhammer(request)
        return jackhammer_answer(result.value, result.error)

    async def _abort_jackhammer(self, args: Sequence[Any]) -> str:
        # Upstream ignores any argument and always answers success; a halt that
        # failed is in the log and in the aborted jackhammer's own answer.
        errors = await self._rig.abort_jackhammer()
        if errors:
            log.error("abort_jackhammer: %s", errors)
        return ABORT_JACKHAMMER_ANSWER

    async def _stop(self, args: Sequence[Any]) -> str:
        manipulator_id = decode_manipulator_id(self._arg(args))
        handle = self._handle_for(manipulator_id)
        if handle is None:
            return self._unknown(manipulator_id)
        result = await handle.stop()
        return result.error

    async def _stop_all(self, args: Sequence[Any]) -> str:
        return await self._rig.stop_all()


# --- read answers, rendered on the actor's task -------------------------------------


def _position_answer(result: Result[Vector4]) -> str:
    if result.error or result.value is None:
        return to_json(PositionalResponse(error=result.error))
    return to_json(PositionalResponse(position=result.value))


def _angles_answer(result: Result[Vector3]) -> str:
    if result.error or result.value is None:
        return to_json(AngularResponse(error=result.error))
    return to_json(AngularResponse(angles=result.value))


def _shank_answer(result: Result[int]) -> str:
    if result.error or result.value is None:
        return to_json(ShankCountResponse(error=result.error))
    return to_json(ShankCountResponse(shank_count=result.value))
