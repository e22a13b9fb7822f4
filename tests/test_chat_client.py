"""The learner's chat client (wslab/classroom/chat_client.py) against a room that relays anything: every
message it receives is kept, none stops its reader. Peer: a plain websockets server."""

from __future__ import annotations

import json

from websockets.asyncio.server import serve

from wslab.classroom.chat_client import ChatClient
from wslab.server.background import LoopThread

from .conftest import seconds

JUNK = ["123", "null", "[1, 2]", "[" * 100_000, "not json", json.dumps({"events": 5}),
        json.dumps({"events": [7, {"type": "message"}]}), json.dumps({"type": "message", "nick": 1})]


def test_a_client_keeps_reading_after_messages_that_are_not_events():
    """Issue 19: forged events (null, [1,2], 123) reach members verbatim; a client must survive them."""

    async def room(connection):
        await connection.send(json.dumps({"type": "welcome", "nick": "ada"}))
        for junk in JUNK:
            await connection.send(junk)
        await connection.send(json.dumps({"type": "message", "nick": "bob", "text": "still here"}))
        await connection.wait_closed()

    async def start():
        return await serve(room, "127.0.0.1", 0)

    thread = LoopThread("junk-room")
    server = thread.run(start())
    port = server.sockets[0].getsockname()[1]
    client = ChatClient(f"ws://127.0.0.1:{port}/", "ada", name="junk-client")
    try:
        with client._cond:
            client._cond.wait_for(lambda: len(client.events) >= 2 + len(JUNK), seconds(5))
        messages, events, info = client.messages, list(client.events), client.close_info
    finally:
        client.stop()
        server.close()
        thread.run(server.wait_closed(), seconds(5))
        thread.stop()
    assert info is None  # still connected: the reader did not stop
    assert len(events) == 2 + len(JUNK)
    assert [e["text"] for e in events[1:4]] == ["123", "null", "[1, 2]"]  # non-objects kept as raw
    assert messages[-1] == "bob: still here"
