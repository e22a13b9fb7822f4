"""The lab: the same events delivered by every transport, measured (lessons 01, 02 and 04).

* ``events.py``: one numbered source of events for every transport.
* ``labserver.py`` with ``labhttp.py`` (polling, long polling, SSE on tornado)
  and ``labpush.py`` (WebSocket push): one event source, four deliveries.
* ``transports.py``: the clients that receive them; ``timeline.py`` draws them.
* ``link.py``: a real network's delay, jitter and bandwidth on loopback.
* ``wiretap.py`` and ``capture.py``: a relay that records every byte, and the
  views on what it recorded (hex, HTTP, frames); ``http_messages.py`` reads
  the HTTP in those bytes without trusting a length.
* ``experiment/``: the latency lab (``wslab.run_experiment``): a seeded
  schedule over every transport against a raw TCP floor; ``plots.py`` draws
  its results; ``bench.py`` is ``python -m wslab bench``.
* ``scaling.py``: the "why WebSockets" curve, server cost against clients;
  ``childproc.py`` runs measuring clients in a process of their own.
"""

__all__: list[str] = []
