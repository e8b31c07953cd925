"""The message-level WebSocket wrapper, fed wsproto client frames in arbitrary chunks."""

from __future__ import annotations

import itertools

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

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


# A stream item: a whole message, a message split in fragments, or a ping.
_Item = tuple[str, str | bytes]
_items = st.lists(
    st.one_of(
        st.tuples(st.just("whole"), st.one_of(st.text(max_size=300), st.binary(max_size=300))),
        st.tuples(st.just("whole"), st.sampled_from([b"\x01" * 126, b"\x02" * 70_000])),
        st.tuples(st.just("fragments"), st.one_of(st.text(max_size=50), st.binary(max_size=50))),
        st.tuples(st.just("ping"), st.binary(max_size=20)),
    ),
    min_size=1,
    max_size=12,
)


def client_stream(items: list[_Item]) -> tuple[bytes, list[str | bytes], list[bytes]]:
    """Client frames for ``items``, the messages they carry and the ping payloads."""
    client = Connection(ConnectionType.CLIENT)
    out: list[bytes] = []
    messages: list[str | bytes] = []
    pings: list[bytes] = []
    for kind, value in items:
        if kind == "ping":
            assert isinstance(value, bytes)
            out.append(client.send(Ping(payload=value)))
            pings.append(value)
            continue
        messages.append(value)
        if kind == "whole":
            event = TextMessage(data=value) if isinstance(value, str) else BytesMessage(data=value)
            out.append(client.send(event))
            continue
        half = len(value) // 2
        for part, last in ((value[:half], False), (value[half:], True)):
            if isinstance(part, str):
                out.append(client.send(TextMessage(data=part, message_finished=last)))
            else:
                out.append(client.send(BytesMessage(data=part, message_finished=last)))
    return b"".join(out), messages, pings


@settings(max_examples=60, deadline=None)
@given(_items, st.lists(st.integers(min_value=0), max_size=20))
def test_messages_pings_and_fragments_keep_their_order_in_any_chunking(
    items: list[_Item], cuts: list[int]
) -> None:
    data, messages, _pings = client_stream(items)

    async def main() -> None:
        assert await receive_all(chunked(data, cuts), len(messages), 100_000) == messages

    trio.run(main)


def test_pings_among_ordinary_frames_are_answered_with_pongs() -> None:
    data, messages, pings = client_stream(
        [("whole", "a"), ("ping", b"p1"), ("whole", b"b"), ("ping", b"p2"), ("whole", "c")]
    )

    async def main() -> None:
        server_stream, client_side = trio.testing.memory_stream_pair()
        ws = WebSocket(server_stream, b"", 1000, write_timeout=1.0)
        await client_side.send_all(data)
        with trio.fail_after(5):
            got = [await ws.receive() for _ in messages]
        assert got == messages
        client = Connection(ConnectionType.CLIENT)
        pongs: list[bytes] = []
        with trio.fail_after(5):
            while len(pongs) < len(pings):
                client.receive_data(bytes(await client_side.receive_some()))
                pongs += [bytes(e.payload) for e in client.events() if isinstance(e, Pong)]
        assert pongs == pings

    trio.run(main)


def test_handshake_trailing_frames_are_the_first_messages() -> None:
    data, messages, _ = client_stream([("whole", "40"), ("whole", b"\x00")])

    async def main() -> None:
        server_stream, _client = trio.testing.memory_stream_pair()
        ws = WebSocket(server_stream, data[:-1], 1000, write_timeout=1.0)
        await _client.send_all(data[-1:])
        with trio.fail_after(5):
            assert [await ws.receive(), await ws.receive()] == messages

    trio.run(main)


def test_invalid_utf8_in_a_text_frame_ends_the_connection() -> None:
    payload = b"\xff\xfe"
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    frame = bytes((0x81, 0x80 | len(payload))) + mask + masked

    async def main() -> None:
        server_stream, client_side = trio.testing.memory_stream_pair()
        ws = WebSocket(server_stream, b"", 1000, write_timeout=1.0)
        await client_side.send_all(frames(["ok"]) + frame)
        with trio.fail_after(5):
            assert await ws.receive() == "ok"
            assert await ws.receive() is None
        assert ws.closed

    trio.run(main)


def test_an_unmasked_client_frame_closes_the_connection() -> None:
    async def main() -> None:
        server_stream, client_side = trio.testing.memory_stream_pair()
        ws = WebSocket(server_stream, b"", 1000, write_timeout=1.0)
        await client_side.send_all(frames(["ok"]) + data_frame("unmasked"))
        with trio.fail_after(5):
            assert await ws.receive() == "ok"
            assert await ws.receive() is None

    trio.run(main)


async def test_a_peer_sending_back_to_back_then_pausing_is_still_read_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The reader tries a chatty peer's socket for a moment before sleeping on it.

    That moment is real time, so under a mock clock (which only moves while
    every task sleeps) the reader must still give up and sleep, or the peer's
    later message would never come.
    """
    ours, theirs = trio.socket.socketpair()
    server = trio.SocketStream(ours)
    peer = trio.SocketStream(theirs)
    ws = WebSocket(server, b"", 10_000, write_timeout=1.0)
    burst = [f"message {i}" for i in range(20)]

    async def send() -> None:
        for message in burst:  # back to back: the reader takes the peer for chatty
            await peer.send_all(frames([message]))
        await trio.sleep(30)  # then a long pause (mock time)
        await peer.send_all(frames(["after the pause"]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with trio.fail_after(60):
            received = [await ws.receive() for _ in range(len(burst) + 1)]
    assert received == [*burst, "after the pause"]
    await server.aclose()
    await peer.aclose()
