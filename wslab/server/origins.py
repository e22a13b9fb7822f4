"""The Origin policy: which web pages may open a WebSocket to a listener wslab starts.

Public API
----------
* :func:`origin_allowed`: may a request with this ``Origin`` header open a
  WebSocket, under a :class:`wslab.Limits`'s policy (``origins``,
  ``local_origins``, ``allow_no_origin``) and the listener's own address?
* :func:`env_origins`: the origins the environment names.
* :data:`LOCAL_ORIGIN`: the pattern of pages served from this computer.

:class:`wslab.server.limits.Guard` applies the policy to every websockets
listener (HTTP 403 before the handshake completes); the from-scratch server
(:mod:`wslab.server.scratch`) and the lab's tornado endpoints
(:mod:`wslab.lab.labhttp`) call :func:`origin_allowed` themselves.

Design note
-----------
The Origin policy (RFC 6455 section 10.2: a server that is not meant for every
web page checks ``Origin``; else any page the learner visits can open the
socket with the learner's network position): allowed are requests with no
``Origin`` (Python clients; ``allow_no_origin``), pages from this computer
(``http(s)://127.0.0.1|localhost|[::1]`` on any port, ``local_origins``), the
listener's own address as the socket saw it (``http://<local ip>:<port>``, so
the page a listener serves on the network can connect back; read from the
socket, never from the ``Host`` header), the explicit ``origins``, and the
origins the environment names: ``WSLAB_ORIGINS`` (comma-separated) and
``JUPYTERHUB_PUBLIC_URL``, the public URL of the learner's own server, which
JupyterHub (5.2, ``Spawner.get_env``) hands to the single-user server and so
to its kernels (set when ``c.JupyterHub.public_url`` is configured or
subdomains are used, else empty: then name the hub in ``WSLAB_ORIGINS``).
Behind a hub a notebook page's origin is the hub's, and jupyter-server-proxy
(4.6) copies the request's headers, ``Origin`` and ``Host`` included, to the
kernel's server (after Jupyter's own ``check_origin``). So "Origin equals
Host" proves nothing (any page can reach the server under a name of its own
choosing: DNS rebinding): the hub's origin is configured, never learnt from a
request, and the allow-list never grows from requests. An upgrade from any
other page gets HTTP 403 before the handshake completes.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from urllib.parse import urlsplit

if TYPE_CHECKING:  # the policy's fields live on Limits; limits.py imports this module
    from .limits import Limits

__all__ = ["origin_allowed", "env_origins", "LOCAL_ORIGIN"]

#: Pages served from this computer, on any port.
LOCAL_ORIGIN = re.compile(r"https?://(127\.0\.0\.1|localhost|\[::1\])(:\d{1,5})?")


def env_origins(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Origins the environment names: ``WSLAB_ORIGINS`` (comma-separated) and ``JUPYTERHUB_PUBLIC_URL``.

    A value counts when it holds a scheme and a host
    (``https://hub.example.org/user/ada/`` gives ``https://hub.example.org``);
    others are ignored. Read once per :class:`wslab.Guard`.
    """
    env = os.environ if env is None else env
    found: list[str] = []
    candidates = [v.strip() for v in env.get("WSLAB_ORIGINS", "").split(",")]
    candidates.append(env.get("JUPYTERHUB_PUBLIC_URL", ""))
    for value in candidates:
        origin = _origin_of(value.strip())
        if origin and origin not in found:
            found.append(origin)
    return tuple(found)


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _own_origins(sockname: Any) -> tuple[str, ...]:
    """The origins of a page this listener itself served at the address the socket was reached on."""
    if not sockname:
        return ()
    host, port = sockname[0], sockname[1]
    host = f"[{host}]" if ":" in host else host
    return (f"http://{host}:{port}", f"https://{host}:{port}")


def origin_allowed(
    origin: str | None,
    *,
    limits: Limits | None = None,
    allow: Iterable[Any] = (),
    sockname: Any = None,
) -> bool:
    """Whether a request with this ``Origin`` header may open a WebSocket.

    ``limits``: the :class:`wslab.Limits` whose policy applies (None: the
    defaults, ``Limits()``'s: no Origin and this computer's pages allowed);
    ``allow``: more allowed origins (strings or patterns; a :class:`wslab.Guard`
    passes its explicit list and the environment's); ``sockname``: the local
    address the socket was reached on (the listener's own page). See the
    design note.
    """
    if limits is None:  # Limits()'s policy, without importing limits.py (it imports this module)
        allow_no_origin, local_origins, listed = True, True, ()
    else:
        allow_no_origin, local_origins, listed = limits.allow_no_origin, limits.local_origins, limits.origins
    if origin is None:
        return allow_no_origin
    if local_origins and LOCAL_ORIGIN.fullmatch(origin):
        return True
    if origin in _own_origins(sockname):
        return True
    for allowed in (*listed, *allow):
        if isinstance(allowed, re.Pattern):
            if allowed.fullmatch(origin):
                return True
        elif allowed == origin:
            return True
    return False
