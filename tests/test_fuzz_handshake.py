"""Random and mutated handshakes into every public parser and checker of ``wslab.protocol.handshake``.

Seeded and bounded in time. Each function may only raise what its docstring
says (issue 14 item 5): ``parse_request`` a :class:`~wslab.protocol.handshake.BadRequest`
or :class:`~wslab.protocol.handshake.HeadersTooLarge`, ``parse_response`` an
:class:`~wslab.protocol.handshake.InvalidResponse`, ``check_request`` a
:class:`~wslab.HandshakeError` with a status, ``check_response`` an
``InvalidResponse`` or a ``BadRequest`` (our own request), ``accept_key``,
``response_101`` and ``build_request`` a ``ValueError`` that is not a
``UnicodeError``. Two more properties tie them together: a request that
``check_request`` accepts is valid HTTP for h11 (an independent parser), and
the ``response_101`` built for it passes ``check_response``.
"""

from __future__ import annotations

import base64
import random
import time

import h11

from wslab import handshake as hs

from .conftest import seconds

SEED = 6455
BUDGET = 2.5  # seconds per test (scaled)
MIN_CASES = 1000  # at least this many inputs per test, even on a slow machine

KEY = "dGhlIHNhbXBsZSBub25jZQ=="

VALID_REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nUpgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:8888\r\n"
    b"Sec-WebSocket-Protocol: chat, json\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)
VALID_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + hs.accept_key(KEY).encode() + b"\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n\r\n"
)
# Bytes that parsers trip on: line ends, separators, controls, non-ASCII digits, huge numbers.
INTERESTING = [
    b"\r\n", b"\n", b"\r", b"\x00", b"\x01", b"\x7f", b"\t", b" ", b":", b",", b";", b"=",
    b"\xb2", b"\xd9\xa1", b"\xff", b"\xe9", b"0", b"9" * 4400, b"-1", b"HTTP/1.1", b"\r\n\r\n",
    b"Host: x\r\n", b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Sec-WebSocket-Key: \xfc==\r\n", b"Sec-WebSocket-Version: 8\r\n", b"Upgrade: h2c\r\n",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits: flip, insert, delete, duplicate or drop a line, truncate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice == 1:
            out[at:at] = rng.choice(INTERESTING)
        elif choice == 2:
            del out[at : at + rng.randint(1, 8)]
        elif choice in (3, 4):
            lines = bytes(out).split(b"\r\n")
            i = rng.randrange(len(lines))
            if choice == 3:
                lines.insert(i, lines[rng.randrange(len(lines))])
            else:
                del lines[i]
            out = bytearray(b"\r\n".join(lines))
        elif choice == 5:
            out = out[: rng.randrange(len(out) + 1)]
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(out)


def inputs(rng: random.Random, valid: bytes):
    """Endless inputs: mostly mutated valid heads, some random bytes, until the budget runs out."""
    deadline = time.monotonic() + seconds(BUDGET)
    count = 0
    while count < MIN_CASES or time.monotonic() < deadline:
        count += 1
        if count > 200_000:
            return
        if rng.random() < 0.15:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        else:
            yield mutate(rng, valid)


def h11_accepts(data: bytes) -> bool:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    try:
        return isinstance(conn.next_event(), h11.Request)
    except h11.RemoteProtocolError:
        return False


def test_requests_raise_only_documented_errors_and_accepted_ones_are_valid_http():
    rng = random.Random(SEED)
    counts = {"none": 0, "refused": 0, "accepted": 0}
    for data in inputs(rng, VALID_REQUEST):
        try:
            request = hs.parse_request(data)
        except (hs.BadRequest, hs.HeadersTooLarge) as error:
            assert error.status in (400, 431) and error.message, repr(data)
            assert hs.refusal(error).startswith(f"HTTP/1.1 {error.status} ".encode())
            counts["refused"] += 1
            continue
        if request is None:
            counts["none"] += 1
            continue
        str(request), repr(request), request.subprotocols, request.extensions
        try:
            accept = hs.check_request(request, origins=[None, "http://127.0.0.1:8888"])
        except hs.HandshakeError as error:
            assert error.status in (400, 403, 426) and error.message, repr(data)
            refusal = hs.refusal(error)
            assert hs.parse_response(refusal).status == error.status
            counts["refused"] += 1
            continue
        counts["accepted"] += 1
        head = data[: data.index(b"\r\n\r\n") + 4]
        assert h11_accepts(head), f"wslab accepted what h11 calls malformed: {head!r}"
        chosen = request.subprotocols[0] if request.subprotocols else None
        response = hs.response_101(request, chosen)
        assert hs.check_response(response, request).headers["Sec-WebSocket-Accept"] == accept
    assert min(counts.values()) > 0, counts


def test_responses_raise_only_documented_errors():
    rng = random.Random(SEED + 1)
    request = hs.build_request("ws://127.0.0.1:8765/chat", key=KEY, subprotocols=["chat"])
    counts = {"none": 0, "invalid": 0, "accepted": 0}
    for data in inputs(rng, VALID_RESPONSE):
        try:
            if hs.parse_response(data) is None:
                counts["none"] += 1
                continue
            hs.check_response(data, request)
            counts["accepted"] += 1
        except hs.InvalidResponse as error:
            assert error.status is None and error.message, repr(data)
            str(error)
            counts["invalid"] += 1
    assert min(counts.values()) > 0, counts


def test_our_own_request_given_to_check_response_raises_only_bad_request():
    """A caller's request without a key, with a non-ASCII key, or broken: BadRequest, not KeyError."""
    rng = random.Random(SEED + 2)
    seen = 0
    for data in inputs(rng, VALID_REQUEST):
        try:
            hs.check_response(VALID_RESPONSE, data)
        except (hs.BadRequest, hs.HeadersTooLarge, hs.InvalidResponse) as error:
            assert error.message
            seen += 1
    assert seen > 0


def test_keys_urls_and_headers_we_send_raise_only_value_error():
    rng = random.Random(SEED + 3)
    alphabet = "ab=+/\r\n\x00\t :,;\u00fc\u2713\xb2@?#[]%"
    deadline = time.monotonic() + seconds(BUDGET / 2)
    for count in range(50_000):
        if count >= MIN_CASES and time.monotonic() > deadline:
            break
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        for call in (
            lambda: hs.accept_key(text),
            lambda: hs.build_request("ws://127.0.0.1:1/" + text),
            lambda: hs.build_request("ws://" + text),
            lambda: hs.build_request("ws://127.0.0.1:1/", origin=text, headers=[("X-" + text[:3], text)]),
            lambda: hs.build_request("ws://127.0.0.1:1/", key=text, subprotocols=[text]),
        ):
            try:
                sent = call()
            except ValueError as error:
                assert not isinstance(error, UnicodeError), repr(text)
                continue
            if isinstance(sent, bytes):
                # What we send parses back as one request with the headers we meant.
                request = hs.parse_request(sent)
                assert request is not None and request.method == "GET", sent
    # The key itself: any 16 bytes in base64 round-trips through the server side.
    for _ in range(200):
        key = base64.b64encode(rng.randbytes(16)).decode()
        request = hs.parse_request(hs.build_request("ws://127.0.0.1:1/", key=key))
        assert hs.check_request(request) == hs.accept_key(key)
