"""Servers that run in the background of a notebook, and the limits every listener has.

Lessons 00 (``wslab.serve``), 06 (a server from scratch) and every lesson that
starts a server.

* ``background.py``: the lifecycle every background thing shares (a loop
  thread, a registry by name, ``status()``, ``stop_all()``).
* ``serve.py``: ``wslab.serve`` and ``serve_in_thread``, a websockets server
  with clear errors for a taken port, a forgotten ``await`` or a legacy handler.
* ``limits.py``: ``wslab.Limits`` and the ``Guard`` that applies them (sizes,
  timeouts, connection caps, Origin policy) to every listener wslab starts.
* ``origins.py``: the Origin policy itself: which web pages may open a socket
  (this computer's, the listener's own, ``WSLAB_ORIGINS``, the hub's).
* ``stream_server.py``: the same lifecycle and limits for raw asyncio streams.
* ``scratch.py``: lesson 06's server written from scratch on ``wslab.protocol``.
* ``handlers.py``: ready-made handlers (``wslab.handlers.echo``, ...).
"""

__all__: list[str] = []
