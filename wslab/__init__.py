"""wslab: the engine behind the WebSocket lessons in ``notebooks/``.

The lessons import what they need from here::

    import wslab
    srv = await wslab.serve(wslab.handlers.echo, name="echo")
    wslab.status()
    wslab.stop_all()
"""

from __future__ import annotations

import os

from . import handlers
from .checks import CheckFailed, assert_done, check, check_equal, exercise, expect
from .environment import environment
from .servers import (
    NoRunningLoopError,
    PortInUseError,
    Server,
    aclose_all,
    serve,
    serve_in_thread,
    status,
    stop_all,
)

# The upgrade handshake and the wiretap (handshake.py, wiretap.py)
from . import handshake
from .handshake import HandshakeError, accept_key
from .wiretap import Capture, Tap, wiretap, wiretap_in_thread

# A real network's delay, jitter and bandwidth between client and server (link.py)
from . import link
from .link import Link

# Polling, long polling and streaming over HTTP (events.py, labserver.py, transports.py, timeline.py;
# labserver loads tornado and transports loads httpx: both on first use, see _LAZY below)
from .events import CursorError, Event, EventSource, poisson

# Frames, bit by bit (frames.py)
from . import frames
from .frames import CloseCode, Frame, Message, Opcode, ProtocolError, Reader, explain

# The browser and the class chat room (browser.py, chat.py)
from .browser import PushChannel, browser_client, push_channel, push_channel_in_thread
from .chat import ChatClient, ChatRoom, chat_room, chat_room_in_thread, join_classroom

# The protocol battery and the from-scratch server (battery/, scratch.py)
from .battery import check_server, check_server_sync
from . import scratch
from .scratch import ScratchServer, serve_scratch, serve_streams

# The latency lab: push against polling, measured and plotted (experiment/, plots.py;
# both load on first use, see _LAZY below)

# The "why WebSockets" curve: server cost against clients (scaling.py; engineer lab)
from . import scaling
from .scaling import measure_scaling, plot_scaling

# Listener limits, one set for every server (limits.py; engineer guard)
from . import limits
from .limits import Guard, Limits

# Production (lessons 07 and 08): wss:// with a throwaway CA, a reverse proxy, authentication
# (07); reconnection, one room over several processes through Redis
# (tls.py, proxy.py, auth.py, reconnect.py, broker.py; redis and trustme load on first use)
from . import auth, broker, proxy, reconnect, tls

# The browser's bufferedAmount, live (lesson 08, backpressure; bufferdemo.py; engineer prod)
from . import bufferdemo

__version__ = "0.1.0"


# The latency lab (measure): names whose modules import a heavy library load on first use, so
# `import wslab` costs about what `import websockets` does. name -> (module, attribute or None).
_LAZY = {
    "plots": (".plots", None),  # matplotlib, about 0.3 s
    "transports": (".transports", None),  # httpx
    "receive": (".transports", "receive"),
    "deliver": (".transports", "deliver"),
    "timeline": (".timeline", None),  # imports transports
    "LabServer": (".labserver", "LabServer"),  # tornado
    "lab_server": (".labserver", "lab_server"),
    "lab_server_in_thread": (".labserver", "lab_server_in_thread"),
    "experiment": (".experiment", None),
    "run_experiment": (".experiment", "run_experiment"),
    "ExperimentConfig": (".experiment", "ExperimentConfig"),
    "Results": (".experiment", "Results"),
    "TransportResult": (".experiment", "TransportResult"),
    "load_results": (".experiment", "load_results"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = importlib.import_module(module, __name__)
        if attribute is not None:
            value = getattr(value, attribute)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'wslab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
