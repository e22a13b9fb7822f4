"""A WebSocket echo server from scratch: asyncio streams, ``wslab.protocol.handshake``, ``wslab.protocol.frames``.

This is the reference for lesson 06, where you write the same server
yourself. Read :func:`connection` top to bottom: it is the whole protocol.

    srv = await wslab.serve_scratch()          # an echo server on 127.0.0.1
    report = await wslab.check_server(srv)     # the battery: every case passes

Design note
-----------
* :func:`connection` serves one client on one ``(reader, writer)`` pair: it
  reads the upgrade request (within ``limits.open_timeout``, else 408),
  answers 101 or a refusal (400, 403 for a page the Origin policy does not
  allow, 426, 431), then feeds every byte it reads to a
  :class:`wslab.protocol.frames.Reader`, which unmasks, reassembles fragments, checks
  UTF-8 and the size limit. When a frame is bad the reader raises
  :class:`~wslab.protocol.frames.ProtocolError`; ``error.events`` holds what it decoded
  before the bad frame in the same read, and the server answers those first
  (echoes, pongs), as websockets, wsproto and Node's ``ws`` do, then fails the
  connection with the error's close code.
* Failing the connection (RFC 6455 7.1.7) and refusing a handshake both end
  in :func:`fail`/``_linger``: write the close frame (or the HTTP refusal),
  half-close (TCP FIN after it), then read and discard whatever the client
  still sends until it closes too, or ``limits.close_timeout``. Closing a
  socket while unread bytes wait in it makes the kernel answer with a reset,
  and a reset can wipe the client's copy of the close frame before it is read:
  a client still writing a 1 MiB message would see "connection reset" instead
  of 1009. The discarded bytes are never parsed (7.1.7: "MUST NOT continue to
  attempt to process data (including a responding Close frame)"). websockets'
  own server does the same (half-close, then discard until EOF).
* Keepalive: after ``limits.ping_interval`` seconds without a byte from the
  client the server pings; no byte within ``limits.ping_timeout`` more closes
  with 1011. Every write waits for the client to read (``drain``) for at most
  ``limits.stall_timeout`` seconds, then the TCP connection is cut: a client
  that never reads cannot make the server buffer without bound (pongs
  included: each one is drained before the next frame is read).
* :func:`serve_scratch` runs :func:`connection` for every client with
  :func:`wslab.server.stream_server.serve_streams`, which accepts the sockets under
  the kit's connection caps and stops in bounded time (see its design note).
* What must never happen: a stop that hangs. A cancel (the server stopping)
  is answered with close code 1001, going away, unless a close frame went
  already.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Sequence, Union

from ..protocol import frames, handshake
from ..protocol.frames import CloseCode, Frame, Message, Opcode, ProtocolError
from .limits import DEFAULT_LIMITS, Limits
from .origins import env_origins, origin_allowed
from .background import DEFAULT_STOP_TIMEOUT
from .stream_server import ScratchServer, _linger, serve_streams

__all__ = ["connection", "fail", "echo", "serve_scratch", "serve_streams", "ScratchServer", "DEFAULT_MAX_SIZE"]

#: The largest message the reference server accepts, in bytes (1009 beyond it): the kit's default.
DEFAULT_MAX_SIZE = DEFAULT_LIMITS.max_size

Data = Union[str, bytes]
MessageHandler = Callable[[Data], Union[Data, None, Awaitable[Union[Data, None]]]]


def echo(message: Data) -> Data:
    """The default message handler: the reply is the message itself."""
    return message


# -- The server: one client, start to finish ----------------------------------


async def connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    handler: MessageHandler = echo,
    max_size: int | None = DEFAULT_MAX_SIZE,
    limits: Limits = DEFAULT_LIMITS,
    origins: Sequence[Any] = (),
) -> None:
    """Serve one WebSocket client: handshake, then frames until one side closes.

    ``handler(message)`` gets each text (``str``) or binary (``bytes``)
    message and returns the reply (``None``: no reply); it may be async.
    ``limits``: timeouts and the Origin policy (:class:`wslab.Limits`);
    ``origins``: more pages allowed to connect besides the policy's own.
    """
    # 1. The opening handshake (RFC 6455 section 4.2): read until the blank
    #    line that ends the request head, check it, answer 101 or refuse.
    sockname = writer.get_extra_info("sockname")

    def allowed(origin: str | None) -> bool:  # 10.2: which pages may connect
        return origin_allowed(origin, limits=limits, allow=origins, sockname=sockname)

    data = b""
    try:
        async with asyncio.timeout(limits.open_timeout):
            while (request := handshake.parse_request(data)) is None:
                chunk = await reader.read(4096)
                if not chunk:
                    return  # the client left before finishing its request
                data += chunk
        handshake.check_request(request, origins=allowed)
    except (handshake.HandshakeError, TimeoutError) as error:
        if isinstance(error, TimeoutError):
            error = handshake.HandshakeError(
                f"no complete request head within {limits.open_timeout:g} s: send the whole "
                f"request at once", status=408, section="RFC 9110 section 15.5.9",
            )
        writer.write(handshake.refusal(error))  # 400, 403, 408, 426, 431 with a body that says why
        await _linger(reader, writer, limits)
        return
    writer.write(handshake.response_101(request))

    # 2. Frames (section 5). The reader unmasks client frames and checks them;
    #    what it returns is whole messages and control frames.
    incoming = frames.Reader("server", max_size=max_size)
    data = request.rest  # bytes the client sent right after its request
    try:
        while True:
            try:
                events, error = incoming.feed(data), None
            except ProtocolError as exc:
                # What came before the bad frame still counts: answer it first.
                events, error = exc.events, exc
            for event in events:
                if isinstance(event, Message):
                    try:
                        reply = handler(event.data)
                        if inspect.isawaitable(reply):
                            reply = await reply
                        answer = _reply_frame(reply)
                    except Exception:
                        # A bug in the handler: 1011, internal error (7.4.1).
                        await fail(reader, writer, CloseCode.INTERNAL_ERROR, "internal error", limits)
                        raise
                    if answer is not None:
                        await send(writer, answer, limits)
                elif event.opcode == Opcode.PING:
                    # 5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send
                    # a Pong frame in response", with the same application data.
                    await send(writer, Frame.pong(event.payload), limits)
                elif event.opcode == Opcode.CLOSE:
                    # 5.5.1: answer with a close frame, typically echoing the
                    # code; then the server closes TCP first (7.1.1).
                    code, reason = frames.parse_close(event.payload)
                    echoed = None if code == CloseCode.NO_STATUS_RCVD else code
                    await send(writer, Frame.close(echoed, reason), limits)
                    return
                # A PONG needs no answer (5.5.3).
            if error is not None:
                # 7.1.7 "Fail the WebSocket Connection": a close frame with the
                # code (1002, 1007, 1009...), then close TCP.
                await fail(reader, writer, error.code, str(error), limits)
                return
            data = await _receive(reader, writer, limits)
            if not data:
                return  # TCP closed without a close frame: 1006 for the client
    except asyncio.CancelledError:
        # The server is stopping: tell the client why (1001, going away),
        # unless a close frame has gone already (then we half-closed).
        if writer.can_write_eof() and not writer.transport.is_closing():
            try:
                writer.write(frames.encode(Frame.close(CloseCode.GOING_AWAY, "server stopping")))
            except RuntimeError:
                pass  # "Cannot call write() after write_eof()": our close frame went first
        raise


async def send(writer: asyncio.StreamWriter, frame: Frame, limits: Limits = DEFAULT_LIMITS) -> None:
    """Write one frame, unmasked: servers never mask (section 5.1).

    Waits until the client has read enough (``drain``) for at most
    ``limits.stall_timeout`` seconds; then the client is not reading, and the
    TCP connection is cut (``ConnectionAbortedError``).
    """
    writer.write(frames.encode(frame))
    try:
        async with asyncio.timeout(limits.stall_timeout):
            await writer.drain()
    except TimeoutError:
        writer.transport.abort()
        raise ConnectionAbortedError(
            f"the client read nothing for {limits.stall_timeout:g} s: connection cut"
        ) from None


async def fail(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    code: int,
    reason: str,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """7.1.7 "Fail the WebSocket Connection": a close frame with ``code``, then close cleanly.

    After the close frame the server half-closes and discards what the client
    still sends until it closes too (or ``limits.close_timeout``), so the
    client reads the close frame instead of a TCP reset (see the design note).
    """
    writer.write(frames.encode(Frame.close(code, _reason(reason))))
    await _linger(reader, writer, limits)


async def _receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits) -> bytes:
    """The next bytes from the client; a keepalive ping when it has been quiet (b"": close)."""
    try:
        async with asyncio.timeout(limits.ping_interval):
            return await reader.read(65536)
    except TimeoutError:
        pass
    await send(writer, Frame.ping(b"keepalive"), limits)  # 5.5.2: a ping "may serve as a keepalive"
    try:
        async with asyncio.timeout(limits.ping_timeout):
            return await reader.read(65536)  # its pong, or anything else: it is alive
    except TimeoutError:
        await fail(reader, writer, CloseCode.INTERNAL_ERROR, "keepalive ping timeout", limits)
        return b""


def _reply_frame(reply: Any) -> Frame | None:
    """The frame that carries a handler's reply: text for str, binary for bytes."""
    if reply is None:
        return None
    if isinstance(reply, str):
        return Frame.text(reply)
    if isinstance(reply, (bytes, bytearray, memoryview)):
        return Frame.binary(bytes(reply))
    raise TypeError(f"the handler returned {type(reply).__name__}; return str, bytes or None")


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8 (section 5.5)."""
    return text.encode()[:123].decode(errors="ignore")


async def serve_scratch(
    handler: MessageHandler = echo,
    name: str = "scratch",
    *,
    max_size: int | None = None,
    limits: Limits | None = None,
    origins: Sequence[Any] = (),
    **kwargs: Any,
) -> ScratchServer:
    """Start the reference from-scratch server: :func:`connection` with ``handler``.

    ``handler(message)`` returns the reply (default: :func:`echo`);
    ``max_size`` is the largest message in bytes (1009 beyond it; default
    ``limits.max_size``, 1 MiB; ``limits=wslab.Limits(max_size=None)`` for
    no limit).
    ``limits`` (:class:`wslab.Limits`) sets the timeouts, caps and Origin
    policy every wslab listener shares: pages from this computer and from the
    server's own address may connect, and ``origins`` (plus
    ``WSLAB_ORIGINS``); others get 403. Other keyword arguments go to
    :func:`serve_streams`.

    >>> srv = await wslab.serve_scratch()
    >>> report = await wslab.check_server(srv)
    """
    limits = DEFAULT_LIMITS if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a wslab.Limits, got {limits!r}")
    max_size = limits.max_size if max_size is None else max_size
    stop_timeout = kwargs.get("stop_timeout", DEFAULT_STOP_TIMEOUT)
    limits = limits.replace(close_timeout=max(0.05, min(limits.close_timeout, stop_timeout)))
    allowed = (*origins, *env_origins())

    async def scratch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connection(reader, writer, handler=handler, max_size=max_size, limits=limits, origins=allowed)

    return await serve_streams(scratch, name, limits=limits, **kwargs)
