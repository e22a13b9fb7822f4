"""Checks for the pieces of a server: lesson 06's exercises 6.1 and 6.2.

They judge with the websockets library (its client, its frames) and the
RFC's own examples, never with ``wslab.protocol.frames`` or ``wslab.protocol.handshake``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Awaitable, Callable, Sequence

from ..course.checks import CheckFailed, check
from ..course.i18n import N_
from ..course.i18n import gettext as _
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
    for label, rewrite in [(N_("the websockets client's request"), lambda r: r),
                           (N_("the websockets client's request with lowercase header names"), _lowercase_names)]:
        what = _(label)
        client = ClientProtocol(parse_uri("ws://127.0.0.1:8765/chat"))
        client.send_request(client.connect())
        request = rewrite(b"".join(client.data_to_send()))
        answer = _answer(respond, request, what)
        check(isinstance(answer, (bytes, bytearray)),
              _("the answer was {type}; return bytes, e.g. text.encode()").format(type=type(answer).__name__))
        client.receive_data(bytes(answer))
        if client.handshake_exc is not None:
            raise CheckFailed(
                _("for {request}, its client refused your answer {answer}: {error}").format(
                    request=what, answer=_short(bytes(answer), 60), error=client.handshake_exc)
                + (_(" (header names are case-insensitive: compare them with .lower())")
                   if rewrite is _lowercase_names else "")
                + _accept_hint(request, bytes(answer))
            )
        check(client.state is State.OPEN,
              _("your answer {answer} to {request} did not complete the handshake: "
                "does it end with an empty line, b'\\r\\n\\r\\n'?").format(
                  answer=_short(bytes(answer), 60), request=what))
    request = _lowercase_names(request)
    key_line = next(line for line in request.split(b"\r\n") if line.startswith(b"sec-websocket-key"))
    for label, bad, status in [
        (N_("a request without Sec-WebSocket-Key"), request.replace(key_line + b"\r\n", b""), 400),
        (N_("a POST request (RFC 6455 4.2.1: the handshake is a GET)"), b"POST" + request[len(b"GET"):], 400),
        (N_("a request with Sec-WebSocket-Version: 25, a version nobody speaks"),
         request.replace(b"sec-websocket-version: 13", b"sec-websocket-version: 25"), 426),
    ]:
        what = _(label)
        refusal = _answer(respond, bad, what)
        check(isinstance(refusal, (bytes, bytearray)),
              _("for {what}, the answer was {type}; return bytes, e.g. text.encode()").format(
                  what=what, type=type(refusal).__name__))
        refusal = bytes(refusal)
        head = refusal.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        line = head.split("\r\n", 1)[0]
        check(line.startswith(f"HTTP/1.1 {status} "),
              _("for {what}, your answer starts {line}; expected 'HTTP/1.1 {status} ...'").format(
                  what=what, line=repr(line), status=status))
        check(refusal.count(b"\r\n\r\n") >= 1,
              _("for {what}, the answer has no empty line ending its head").format(what=what))
        if status == 426:
            check("sec-websocket-version: 13" in head.lower(),
                  _("the 426 answer lacks the header Sec-WebSocket-Version: 13 (RFC 6455 4.4: it MUST "
                    "name the versions the server speaks)"))


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
        (N_("the RFC's masked 'Hello' (81 85 37 fa 21 3d 7f 9f 4d 51 58)"),
         bytes.fromhex("818537fa213d7f9f4d5158"), [(True, TEXT, b"Hello")]),
        (N_("a 200-byte binary frame (16-bit length)"), ws(WsOpcode.BINARY, big[:200]), [(True, BINARY, big[:200])]),
        (N_("a 70,000-byte binary frame (64-bit length)"), ws(WsOpcode.BINARY, big), [(True, BINARY, big)]),
        (N_("two frames of a fragmented message"),
         ws(WsOpcode.TEXT, b"Hel", fin=False) + ws(WsOpcode.CONT, b"lo"),
         [(False, TEXT, b"Hel"), (True, CONT, b"lo")]),
        (N_("a ping with payload b'hi'"), ws(WsOpcode.PING, b"hi"), [(True, PING, b"hi")]),
        (N_("an empty text frame"), ws(WsOpcode.TEXT, b""), [(True, TEXT, b"")]),
    ]
    for label, data, expected in good:
        what = _(label)
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        got = []
        for _frame in expected:
            try:
                async with asyncio.timeout(timeout):
                    fin, opcode, payload = await read_frame(reader, max_size)
            except TimeoutError:
                raise CheckFailed(_("for {what}, read_frame() waited {seconds} s for more bytes: "
                                    "read exactly the frame's length").format(what=what, seconds=f"{timeout:g}")) from None
            except asyncio.IncompleteReadError as exc:
                raise CheckFailed(_("for {what}, read_frame() read past the frame: it wanted "
                                    "{wanted} more bytes but only {left} were left").format(
                    what=what, wanted=exc.expected, left=len(exc.partial))) from None
            except NotImplementedError:
                raise
            except Exception as exc:  # noqa: BLE001 - a valid frame must not raise
                raise CheckFailed(_("for {what}, read_frame() raised {type}({error}); "
                                    "this frame is valid: return (fin, opcode, payload)").format(
                    what=what, type=type(exc).__name__, error=exc)) from exc
            got.append((bool(fin), int(opcode), bytes(payload)))
        if got != expected:
            raise CheckFailed(_("for {what}, read_frame() returned {got}; expected {expected}").format(
                what=what, got=_short_list(got), expected=_short_list(expected)))
        check(reader.at_eof(), _("for {what}, read_frame() left bytes unread: read the whole frame").format(what=what))

    header_only = struct.pack("!BBQ", FIN | BINARY, MASK_BIT | LENGTH_64, max_size + 1) + b"\0\0\0\0"
    bad = [
        (N_("an unmasked frame (81 05 48 65 6c 6c 6f)"), bytes.fromhex("810548656c6c6f"), 1002, True),
        (N_("a frame with the reserved opcode 0x3"), encode_frame(0x3, b"?"), 1002, True),
        (N_("a text frame with RSV1 set and no extension negotiated"), encode_frame(TEXT, b"x", rsv=0b100), 1002, True),
        (N_("a ping of 126 bytes (control frames carry at most 125)"), encode_frame(PING, b"x" * 126), 1002, True),
        (N_("a ping without FIN (control frames are never fragmented)"), encode_frame(PING, b"x", fin=False), 1002, True),
        (_("a frame that announces {size} bytes (max_size {most})").format(size=f"{max_size + 1:,}", most=f"{max_size:,}"),
         header_only, 1009, False),
    ]
    for label, data, code, eof in bad:
        what = _(label)
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        try:
            async with asyncio.timeout(timeout):
                got = await read_frame(reader, max_size)
        except TimeoutError:
            raise CheckFailed(_("for {what}, read_frame() waited {seconds} s for the payload: check the "
                                "length against max_size before reading it, and raise ProtocolError(..., code={code})").format(
                what=what, seconds=f"{timeout:g}", code=code)) from None
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - we judge what was raised
            raised = getattr(exc, "code", None)
            check(raised == code, _("for {what}, read_frame() raised {type}({error}) with code "
                                    "{raised}; expected code {code}: raise wslab.ProtocolError('...', code={code})").format(
                what=what, type=type(exc).__name__, error=exc, raised=raised, code=code))
            continue
        raise CheckFailed(_("for {what}, read_frame() returned {got}; expected it to raise "
                            "wslab.ProtocolError('...', code={code})").format(what=what, got=_short_list([got]), code=code))


def _answer(respond: Callable[[bytes], Any], request: bytes, what: str) -> Any:
    """``respond(request)``; an exception other than the stub's names the request that caused it."""
    try:
        return respond(request)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's bug, shown with the request
        raise CheckFailed(_("for {what}, handshake_response() raised {type}({error}): "
                            "it must return an answer (101, 400 or 426) for every request").format(
            what=what, type=type(exc).__name__, error=exc)) from exc


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
            key, _colon, value = line.partition(b":")
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
    return _(". For the key {key} the answer needs Sec-WebSocket-Accept: {expected} "
             "(RFC 6455 4.2.2: base64 of the SHA-1 of the key followed by {guid}); yours was {got}").format(
        key=key.decode("latin-1"), expected=expected.decode(), guid=_GUID.decode(),
        got=_("missing") if got is None else got.decode("latin-1"))
