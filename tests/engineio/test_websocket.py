"""The message-level WebSocket wrapper, fed wsproto client frames in arbitrary chunks."""

from __future__ import annotations

import itertools

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from protocol.engineio.websocket import CLOSE_TOO_BIG, MessageTooBig, WebSocket, data_frame


def frames(messages: list[str | bytes]) -> bytes:
    client = Connection(ConnectionType.CLIENT)
    return b"".join(
        client.send(TextMessage(data=m) if isinstance(m, str) else BytesMessage(data=m))
        for m in messages
    )


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def receive_all(chunks: list[bytes], count: int, limit: int) -> list[str | bytes]:
    server_stream, client_stream = trio.testing.memory_stream_pair()
    ws = WebSocket(server_stream, b"", limit, write_timeout=1.0)
    received: list[str | bytes] = []
    async with trio.open_nursery() as nursery:

        async def feed() -> None:
            for chunk in chunks:
                await client_stream.send_all(chunk)

        nursery.start_soon(feed)
        with trio.fail_after(5):
            for _ in range(count):
                message = await ws.receive()
                assert message is not None
                received.append(message)
    return received


_messages = st.lists(st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1)


@settings(max_examples=50, deadline=None)
@given(_messages, st.lists(st.integers(min_value=0), max_size=20))
def test_messages_survive_arbitrary_chunking(messages: list[str | bytes], cuts: list[int]) -> None:
    data = frames(messages)
    assert trio.run(receive_all, chunked(data, cuts), len(messages), 10_000) == messages


def test_a_message_over_the_limit_raises_and_sends_close_1009() -> None:
    async def main() -> None:
        server_stream, client_stream = trio.testing.memory_stream_pair()
        ws = WebSocket(server_stream, b"", 100, write_timeout=1.0)
        await client_stream.send_all(frames(["é" * 60]))  # 120 bytes of UTF-8
        try:
            await ws.receive()
        except MessageTooBig:
            pass
        else:
            raise AssertionError("an oversized message was accepted")
        client = Connection(ConnectionType.CLIENT)
        client.receive_data(bytes(await client_stream.receive_some()))
        events = list(client.events())
        assert isinstance(events[0], CloseConnection)
        assert events[0].code == CLOSE_TOO_BIG

    trio.run(main)


_sized = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.sampled_from([125, 126, 127, 65535, 65536, 70000]).map(lambda n: b"\x07" * n),
    st.sampled_from([125, 126, 65535, 65536]).map(lambda n: "é" * (n // 2)),
)


@settings(max_examples=60, deadline=None)
@given(_sized)
def test_our_server_frames_decode_to_the_same_message_in_wsproto(message: str | bytes) -> None:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data_frame(message))
    texts: list[str] = []
    blobs: list[bytes] = []
    finished = False
    for event in client.events():
        if isinstance(event, TextMessage):
            texts.append(event.data)
        elif isinstance(event, BytesMessage):
            blobs.append(bytes(event.data))
        else:
            raise AssertionError(f"unexpected {event!r}")
        finished = event.message_finished
    assert finished
    if isinstance(message, str):
        assert ("".join(texts), blobs) == (message, [])
    else:
        assert (b"".join(blobs), texts) == (message, [])
