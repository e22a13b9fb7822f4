"""wslab: the engine behind the WebSocket lessons in ``notebooks/``.

The lessons import what they need from here::

    import wslab
    srv = await wslab.serve(wslab.handlers.echo, name="echo")
    wslab.status()
    wslab.stop_all()
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

__version__ = "0.1.0"

# Every public name loads on first use (PEP 562), so `import wslab` costs about what
# `import websockets` does: no asyncio, no websockets server, no tornado, httpx or matplotlib
# until a lesson uses them (benchmarks/bench_import.py measures it).
# name -> (module, attribute), or (module, None) for a module itself.
_LAZY: dict[str, tuple[str, str | None]] = {}


def _lazy(module: str, *names: str) -> None:
    for name in names:
        _LAZY[name] = (module, name)


# The package is in layers, one folder each (ARCHITECTURE.md): course/ (self-checks, display,
# the lesson files), protocol/ (RFC 6455 without I/O), server/ (background servers and their
# limits), lab/ (measuring transports), classroom/ (the browser and the class room),
# production/ (lessons 07 and 08), battery/ (the grader).

# Background servers, ready-made handlers, self-checks, the environment
_lazy(".server.serve", "NoRunningLoopError", "Server", "serve", "serve_in_thread")
_lazy(".server.background", "PortInUseError", "aclose_all", "status", "stop_all")
_lazy(".course.checks", "CheckFailed", "assert_done", "check", "check_equal", "exercise", "expect")
_lazy(".course.environment", "environment")

# The upgrade handshake and the wiretap
_lazy(".protocol.handshake", "HandshakeError", "accept_key")
_lazy(".lab.wiretap", "Capture", "Tap", "wiretap", "wiretap_in_thread")

# A real network's delay, jitter and bandwidth between client and server
_lazy(".lab.link", "Link")

# Polling, long polling and streaming over HTTP
_lazy(".lab.events", "CursorError", "Event", "EventSource", "poisson")
_lazy(".lab.transports", "receive", "deliver")  # httpx
_lazy(".lab.labserver", "LabServer", "lab_server", "lab_server_in_thread")  # tornado

# Frames, bit by bit
_lazy(".protocol.frames", "CloseCode", "Frame", "Message", "Opcode", "ProtocolError", "Reader", "explain")

# The browser and the class chat room
_lazy(".classroom.browser", "browser_client")
_lazy(".classroom.push", "PushChannel", "push_channel", "push_channel_in_thread")
_lazy(".classroom.chat", "ChatClient", "ChatRoom", "chat_room", "chat_room_in_thread", "join_classroom")

# The protocol battery and the from-scratch server
_lazy(".battery", "check_server", "check_server_sync")
_lazy(".server.scratch", "ScratchServer", "serve_scratch", "serve_streams")

# The latency lab: push against polling, measured and plotted (matplotlib)
_lazy(".lab.experiment", "run_experiment", "ExperimentConfig", "Results", "TransportResult", "load_results")

# The "why WebSockets" curve: server cost against clients
_lazy(".lab.scaling", "measure_scaling", "plot_scaling")

# Listener limits, one set for every server
_lazy(".server.limits", "Guard", "Limits")

#: The modules a lesson reaches by a short name (``wslab.frames.encode``, ``wslab.tls``,
#: ``wslab.broker``, ...): one per concept, wherever its folder is. Pinned by tests/test_exports.py.
_MODULES: dict[str, str] = {
    # course/
    "checks": ".course.checks", "display": ".course.display", "exercises": ".course.exercises",
    "lessons": ".course.lessons", "safewrite": ".course.safewrite",
    # protocol/
    "handshake": ".protocol.handshake", "http_head": ".protocol.http_head", "frames": ".protocol.frames",
    "frame_codec": ".protocol.frame_codec", "frame_reader": ".protocol.frame_reader",
    "frame_drawing": ".protocol.frame_drawing",
    # server/
    "servers": ".server.background", "limits": ".server.limits", "stream_server": ".server.stream_server",
    "handlers": ".server.handlers", "scratch": ".server.scratch",
    # lab/
    "events": ".lab.events", "labserver": ".lab.labserver", "labhttp": ".lab.labhttp", "labpush": ".lab.labpush",
    "transports": ".lab.transports", "link": ".lab.link", "capture": ".lab.capture", "timeline": ".lab.timeline",
    "plots": ".lab.plots", "scaling": ".lab.scaling", "bench": ".lab.bench", "childproc": ".lab.childproc",
    "experiment": ".lab.experiment",
    # classroom/
    "chat": ".classroom.chat", "chat_client": ".classroom.chat_client", "browser": ".classroom.browser",
    "bufferdemo": ".classroom.bufferdemo", "fanout": ".classroom.fanout",
    # production/
    "tls": ".production.tls", "proxy": ".production.proxy", "auth": ".production.auth",
    "reconnect": ".production.reconnect", "ratelimit": ".production.ratelimit",
    "sidechannel": ".production.sidechannel", "drain": ".production.drain", "broker": ".production.broker",
    "roomlog": ".production.roomlog", "roomprocs": ".production.roomprocs",
    "redisserver": ".production.redisserver",
}
for _name, _module in _MODULES.items():
    _LAZY.setdefault(_name, (_module, None))
del _name, _module


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        module, attribute = f".{name}", None  # a folder: wslab.lab, wslab.production, ...
    else:
        raise AttributeError(f"module 'wslab' has no attribute {name!r}")
    value: Any = importlib.import_module(module, __name__)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(__all__))


#: True with WSLAB_QUICK=1 (the test suite sets it; a learner on a slow machine may): lessons measure less.
QUICK = os.environ.get("WSLAB_QUICK") == "1"

__all__ = [
    # Background servers (servers.py)
    "Server",
    "serve",
    "serve_in_thread",
    "status",
    "stop_all",
    "aclose_all",
    "PortInUseError",
    "NoRunningLoopError",
    # Ready-made handlers (handlers.py)
    "handlers",
    # Self-checks (checks.py)
    "CheckFailed",
    "check",
    "check_equal",
    "exercise",
    "expect",
    "assert_done",
    # Environment (environment.py)
    "environment",
    "QUICK",
    # The upgrade handshake and the wiretap (handshake.py, wiretap.py)
    "handshake",
    "HandshakeError",
    "accept_key",
    "wiretap",
    "wiretap_in_thread",
    "Tap",
    "Capture",
    # A real network between client and server (link.py)
    "link",
    "Link",
    # Polling, long polling and streaming over HTTP (events.py, labserver.py, transports.py, timeline.py)
    "Event",
    "EventSource",
    "CursorError",
    "poisson",
    "LabServer",
    "lab_server",
    "lab_server_in_thread",
    "transports",
    "receive",
    "deliver",
    "timeline",
    # Frames, bit by bit (frames.py)
    "frames",
    "Frame",
    "Message",
    "Reader",
    "Opcode",
    "CloseCode",
    "ProtocolError",
    "explain",
    # The browser and the class chat room (browser.py, chat.py)
    "browser_client",
    "PushChannel",
    "push_channel",
    "push_channel_in_thread",
    "ChatRoom",
    "chat_room",
    "chat_room_in_thread",
    "ChatClient",
    "join_classroom",
    # The protocol battery and the from-scratch server (battery/, scratch.py)
    "check_server",
    "check_server_sync",
    "scratch",
    "serve_scratch",
    "serve_streams",
    "ScratchServer",
    # The latency lab (experiment.py, plots.py)
    "run_experiment",
    "ExperimentConfig",
    "Results",
    "TransportResult",
    "load_results",
    "plots",
    # The "why WebSockets" curve (scaling.py; engineer lab)
    "scaling",
    "measure_scaling",
    "plot_scaling",
    # Listener limits (limits.py; engineer guard)
    "limits",
    "Limits",
    "Guard",
]
