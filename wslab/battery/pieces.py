"""Checks for the pieces of a server: lesson 06's exercises 6.1 and 6.2.

They judge with the websockets library (its client, its frames) and the
RFC's own examples, never with ``wslab.protocol.frames`` or ``wslab.protocol.handshake``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Awaitable, Callable, Sequence

from ..course.checks import CheckFailed, check
from .runner import DEFAULT_MAX_SIZE
from .craft import BINARY, CONT, FIN, LENGTH_64, MASK_BIT, PING, TEXT, encode_frame
from .craft import short as _short

__all__ = ["check_handshake_response", "check_read_frame"]


def _lowercase_names(request: bytes) -> bytes:
    """The same request with every header name in lowercase (names are case-insensitive, RFC 9110 5.1)."""
    line, *headers = request.split(b"\r\n")
    lowered = [h.split(b":", 1)[0].lower() + b":" + h.split(b":", 1)[1] if b":" in h else h for h in headers]
    return b"\r\n".join([line, *lowered])


def check_handshake_response(respond: Callable[[bytes], bytes]) -> None:
    """Judge ``respond(request_bytes) -> response_bytes``, a server's handshake answer.

    The judge is the websockets library's own client (sans-I/O): its real
    request goes in, and your answer must open its connection; then the same
    request with lowercase header names (``sec-websocket-key: ...``), which
    must open it too. Then three refusals: no ``Sec-WebSocket-Key`` and a
    ``POST`` must get 400, an unknown version (25) must get 426 with
    ``Sec-WebSocket-Version: 13`` (RFC 6455 4.2.1, 4.4). Raises
    :class:`wslab.CheckFailed` saying what is wrong.
    """
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.uri import parse_uri

    request = b""
    for what, rewrite in [("", lambda r: r), (" with lowercase header names", _lowercase_names)]:
        client = ClientProtocol(parse_uri("ws://127.0.0.1:8765/chat"))
        client.send_request(client.connect())
        request = rewrite(b"".join(client.data_to_send()))
        answer = _answer(respond, request, f"the websockets client's request{what}")
        check(isinstance(answer, (bytes, bytearray)),
              f"the answer was {type(answer).__name__}; return bytes, e.g. text.encode()")
        client.receive_data(bytes(answer))
        if client.handshake_exc is not None:
            raise CheckFailed(
                f"for the websockets client's request{what}, its client refused your answer "
                f"{_short(bytes(answer), 60)}: {client.handshake_exc}"
                + (" (header names are case-insensitive: compare them with .lower())" if what else "")
                + _accept_hint(request, bytes(answer))
            )
        check(client.state is State.OPEN,
              f"your answer {_short(bytes(answer), 60)} to the request{what} did not complete the handshake: "
              f"does it end with an empty line, b'\\r\\n\\r\\n'?")
    request = _lowercase_names(request)
    key_line = next(line for line in request.split(b"\r\n") if line.startswith(b"sec-websocket-key"))
    for what, bad, status in [
        ("a request without Sec-WebSocket-Key", request.replace(key_line + b"\r\n", b""), 400),
        ("a POST request (RFC 6455 4.2.1: the handshake is a GET)", b"POST" + request[len(b"GET"):], 400),
        ("a request with Sec-WebSocket-Version: 25, a version nobody speaks",
         request.replace(b"sec-websocket-version: 13", b"sec-websocket-version: 25"), 426),
    ]:
        refusal = _answer(respond, bad, what)
        check(isinstance(refusal, (bytes, bytearray)),
              f"for {what}, the answer was {type(refusal).__name__}; return bytes, e.g. text.encode()")
        refusal = bytes(refusal)
        head = refusal.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        line = head.split("\r\n", 1)[0]
        check(line.startswith(f"HTTP/1.1 {status} "),
              f"for {what}, your answer starts {line!r}; expected 'HTTP/1.1 {status} ...'")
        check(refusal.count(b"\r\n\r\n") >= 1, f"for {what}, the answer has no empty line ending its head")
        if status == 426:
            check("sec-websocket-version: 13" in head.lower(),
                  "the 426 answer lacks the header Sec-WebSocket-Version: 13 (RFC 6455 4.4: it MUST "
                  "name the versions the server speaks)")


async def check_read_frame(
    read_frame: Callable[..., Awaitable[tuple[bool, int, bytes]]],
    max_size: int = DEFAULT_MAX_SIZE,
    *,
    timeout: float = 2.0,
) -> None:
    """Judge ``await read_frame(reader, max_size) -> (fin, opcode, payload)``.

    Frames made by the websockets library (and the RFC's examples) go into an
    :class:`asyncio.StreamReader`; each must come back unmasked. Frames that
    break the rules must raise an exception whose ``.code`` is the close code
    (1002 unmasked / reserved bits / reserved opcode / long or fragmented control frame, 1009 over
    ``max_size``, before reading the payload). Raises :class:`wslab.CheckFailed`.
    """
    from websockets.frames import Frame as WsFrame
    from websockets.frames import Opcode as WsOpcode

    def ws(opcode: WsOpcode, payload: bytes, fin: bool = True) -> bytes:
        return WsFrame(opcode, payload, fin=fin).serialize(mask=True)

    big = bytes(i % 251 for i in range(70_000))
    good: list[tuple[str, bytes, list[tuple[bool, int, bytes]]]] = [
        ("the RFC's masked 'Hello' (81 85 37 fa 21 3d 7f 9f 4d 51 58)",
         bytes.fromhex("818537fa213d7f9f4d5158"), [(True, TEXT, b"Hello")]),
        ("a 200-byte binary frame (16-bit length)", ws(WsOpcode.BINARY, big[:200]), [(True, BINARY, big[:200])]),
        ("a 70,000-byte binary frame (64-bit length)", ws(WsOpcode.BINARY, big), [(True, BINARY, big)]),
        ("two frames of a fragmented message",
         ws(WsOpcode.TEXT, b"Hel", fin=False) + ws(WsOpcode.CONT, b"lo"),
         [(False, TEXT, b"Hel"), (True, CONT, b"lo")]),
        ("a ping with payload b'hi'", ws(WsOpcode.PING, b"hi"), [(True, PING, b"hi")]),
        ("an empty text frame", ws(WsOpcode.TEXT, b""), [(True, TEXT, b"")]),
    ]
    for what, data, expected in good:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        got = []
        for _ in expected:
            try:
                async with asyncio.timeout(timeout):
                    fin, opcode, payload = await read_frame(reader, max_size)
            except TimeoutError:
                raise CheckFailed(f"for {what}, read_frame() waited {timeout:g} s for more bytes: "
                                  f"read exactly the frame's length") from None
            except asyncio.IncompleteReadError as exc:
                raise CheckFailed(f"for {what}, read_frame() read past the frame: it wanted "
                                  f"{exc.expected} more bytes but only {len(exc.partial)} were left") from None
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - a valid frame must not raise
                raise CheckFailed(f"for {what}, read_frame() raised {type(exc).__name__}({exc}); "
                                  f"this frame is valid: return (fin, opcode, payload)") from exc
            got.append((bool(fin), int(opcode), bytes(payload)))
        if got != expected:
            raise CheckFailed(f"for {what}, read_frame() returned {_short_list(got)}; expected {_short_list(expected)}")
        check(reader.at_eof(), f"for {what}, read_frame() left bytes unread: read the whole frame")

    header_only = struct.pack("!BBQ", FIN | BINARY, MASK_BIT | LENGTH_64, max_size + 1) + b"\0\0\0\0"
    bad = [
        ("an unmasked frame (81 05 48 65 6c 6c 6f)", bytes.fromhex("810548656c6c6f"), 1002, True),
        ("a frame with the reserved opcode 0x3", encode_frame(0x3, b"?"), 1002, True),
        ("a text frame with RSV1 set and no extension negotiated", encode_frame(TEXT, b"x", rsv=0b100), 1002, True),
        ("a ping of 126 bytes (control frames carry at most 125)", encode_frame(PING, b"x" * 126), 1002, True),
        ("a ping without FIN (control frames are never fragmented)", encode_frame(PING, b"x", fin=False), 1002, True),
        (f"a frame that announces {max_size + 1:,} bytes (max_size {max_size:,})", header_only, 1009, False),
    ]
    for what, data, code, eof in bad:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        try:
            async with asyncio.timeout(timeout):
                got = await read_frame(reader, max_size)
        except TimeoutError:
            raise CheckFailed(f"for {what}, read_frame() waited {timeout:g} s for the payload: check the "
                              f"length against max_size before reading it, and raise ProtocolError(..., code={code})") from None
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - we judge what was raised
            raised = getattr(exc, "code", None)
            check(raised == code, f"for {what}, read_frame() raised {type(exc).__name__}({exc}) with code "
                                  f"{raised}; expected code {code}: raise wslab.ProtocolError('...', code={code})")
            continue
        raise CheckFailed(f"for {what}, read_frame() returned {_short_list([got])}; expected it to raise "
                          f"wslab.ProtocolError('...', code={code})")


def _answer(respond: Callable[[bytes], Any], request: bytes, what: str) -> Any:
    """``respond(request)``; an exception other than the stub's names the request that caused it."""
    try:
        return respond(request)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's bug, shown with the request
        raise CheckFailed(f"for {what}, handshake_response() raised {type(exc).__name__}({exc}): "
                          f"it must return an answer (101, 400 or 426) for every request") from exc


def _short_list(frames: Sequence[Any]) -> str:
    return "[" + ", ".join(
        f"({f[0]!r}, {f[1]!r}, {_short(bytes(f[2]))})" if isinstance(f, tuple) and len(f) == 3 else repr(f)
        for f in frames
    ) + "]"


#: RFC 6455 4.2.2: the GUID appended to the client's key before hashing.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _accept_hint(request: bytes, answer: bytes) -> str:
    """When the answer's Sec-WebSocket-Accept is wrong: the right one for this request, and how it is made."""
    import base64
    import hashlib

    def header(message: bytes, name: bytes) -> bytes | None:
        for line in message.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        return None

    key = header(request, b"sec-websocket-key")
    if key is None:
        return ""
    expected = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    got = header(answer, b"sec-websocket-accept")
    if got == expected:
        return ""
    return (f". For the key {key.decode('latin-1')} the answer needs Sec-WebSocket-Accept: {expected.decode()} "
            f"(RFC 6455 4.2.2: base64 of the SHA-1 of the key followed by {_GUID.decode()}); "
            f"yours was {'missing' if got is None else got.decode('latin-1')}")
