"""The classroom: a browser connected to the kernel, and one chat room for a class (lesson 05).

* ``browser.py``: a live WebSocket client in the cell output, reachable on a
  laptop and through a hub's proxy (``wslab.browser_client``).
* ``push.py``: a server that pushes from Python to every page
  (``wslab.push_channel``), with the client's page at ``/``.
* ``chat.py``: the class chat room (nicks, history, broadcast, slow readers
  dropped, Origin allow-list); ``chat_client.py``: a learner's client for it.
* ``fanout.py``: how long one broadcast takes to reach 1,000 clients.
* ``bufferdemo.py``: the browser's ``bufferedAmount``, live (lesson 08).
* ``cli.py``: ``python -m wslab classroom``, the room for a whole class, on one
  process or several through Redis (``wslab.production.broker``).
"""

__all__: list[str] = []
