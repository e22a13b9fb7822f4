"""Production: securing a WebSocket service (lesson 07) and keeping it running (lesson 08).

Securing: ``tls.py`` (wss:// with a throwaway CA), ``proxy.py`` (a small
reverse proxy, to see what nginx does), ``auth.py`` (tokens and the Origin
check against cross-site hijacking), ``sidechannel.py`` (compression leaks a
secret's length), ``ratelimit.py`` (a token bucket per client).

Keeping it running: ``reconnect.py`` (a stream that resumes after a restart),
``drain.py`` (1012/1001 during a deploy), and one room served by several
processes through Redis: ``broker.py`` (the room), ``outbox.py`` (its events
until Redis has them, bounded), ``roomlog.py`` (its entries, sealed with HMAC),
``roomprocs.py`` (room and Redis processes, for killing
and restarting in tests and lessons), ``redisserver.py`` (which Redis).
Each module holds the check of its lesson's exercise.
"""

__all__: list[str] = []
