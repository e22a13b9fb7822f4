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
import sys
import types
from typing import Any

__version__ = "0.1.0"

# Every public name loads on first use (PEP 562), so `import wslab` costs about what
# `import websockets` does: no asyncio, no websockets server, no tornado, httpx or matplotlib
# until a lesson uses them (benchmarks/bench_import.py measures it). name -> (module, attribute
# or None for the module itself). Any other `wslab.<submodule>` also imports on first use.
_LAZY: dict[str, tuple[str, str | None]] = {}


def _lazy(module: str, *names: str) -> None:
    for name in names:
        _LAZY[name] = (module, name)


# Background servers, ready-made handlers, self-checks, the environment
# (servers.py, handlers.py, checks.py, environment.py)
_lazy(".servers", "NoRunningLoopError", "PortInUseError", "Server", "aclose_all", "serve", "serve_in_thread",
      "status", "stop_all")
_lazy(".checks", "CheckFailed", "assert_done", "check", "check_equal", "exercise", "expect")
_lazy(".environment", "environment")

# The upgrade handshake and the wiretap (handshake.py, wiretap.py)
_lazy(".handshake", "HandshakeError", "accept_key")
_lazy(".wiretap", "Capture", "Tap", "wiretap", "wiretap_in_thread")

# A real network's delay, jitter and bandwidth between client and server (link.py)
_lazy(".link", "Link")

# Polling, long polling and streaming over HTTP (events.py, labserver.py, transports.py, timeline.py)
_lazy(".events", "CursorError", "Event", "EventSource", "poisson")
_lazy(".transports", "receive", "deliver")  # httpx
_lazy(".labserver", "LabServer", "lab_server", "lab_server_in_thread")  # tornado

# Frames, bit by bit (frames.py)
_lazy(".frames", "CloseCode", "Frame", "Message", "Opcode", "ProtocolError", "Reader", "explain")

# The browser and the class chat room (browser.py, chat.py)
_lazy(".browser", "PushChannel", "browser_client", "push_channel", "push_channel_in_thread")
_lazy(".chat", "ChatClient", "ChatRoom", "chat_room", "chat_room_in_thread", "join_classroom")

# The protocol battery and the from-scratch server (battery/, scratch.py)
_lazy(".battery", "check_server", "check_server_sync")
_lazy(".scratch", "ScratchServer", "serve_scratch", "serve_streams")

# The latency lab: push against polling, measured and plotted (experiment/, plots.py: matplotlib)
_lazy(".experiment", "run_experiment", "ExperimentConfig", "Results", "TransportResult", "load_results")

# The "why WebSockets" curve: server cost against clients (scaling.py; engineer lab)
_lazy(".scaling", "measure_scaling", "plot_scaling")

# Listener limits, one set for every server (limits.py; engineer guard)
_lazy(".limits", "Guard", "Limits")

# Production (lessons 07 and 08): tls.py, proxy.py, auth.py, reconnect.py, broker.py, bufferdemo.py are
# submodules, loaded on first use like every other (`wslab.tls`, `wslab.broker`, ...).


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value: Any = importlib.import_module(module, __name__)
        if attribute is not None:
            value = getattr(value, attribute)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)  # a submodule: wslab.display, wslab.tls, ...
    else:
        raise AttributeError(f"module 'wslab' has no attribute {name!r}")
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(__all__))


class _Package(types.ModuleType):
    """The package itself: a public function keeps its name when its submodule is imported.

    Importing a submodule binds it on the package (``wslab.wiretap = <module>``).
    Where a public function has its module's name (``wslab.wiretap``,
    ``wslab.environment``), the function must win, whenever the module is
    first imported (by a lesson, or by ``wslab.tls`` importing it), as it did
    when the package imported everything at once.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name, ("", None))[1] is not None:
            return  # the submodule stays in sys.modules; the name stays the function's
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
