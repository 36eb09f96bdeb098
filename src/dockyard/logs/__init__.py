"""Logs: one stream per app, of dyno output, platform events and router lines (Heroku's Logplex).

Lines come in three ways:

- dyno output: :class:`~dockyard.logs.ingest.DynoIngest` reads the runtime's capture of
  every dyno's stdout and stderr (``app[web.1]``), exactly once, even what was written while
  the control plane was down;
- platform events: :meth:`LogHub.event` listens to :class:`~dockyard.events.Events`
  (``dockyard[web.1]: State changed from starting to up``, and ``app[api]: Set FOO config
  vars by …``, which :mod:`dockyard.logs.announce` words); build output (``app[build]``)
  through :meth:`LogHub.emit`;
- router lines: :meth:`LogHub.router_lines` (``dockyard[router]``), from any thread.

The :class:`LogHub` numbers each app's lines (1, 2, 3, … per app, kept across restarts),
keeps the last ``DOCKYARD_LOG_LINES`` in memory and about ``DOCKYARD_LOG_HISTORY_MB`` on disk
(:mod:`dockyard.logs.history`), and gives them to subscribers. ``logs``, ``logs --tail``
and the Heroku CLI read them through log sessions (:mod:`dockyard.api.logs`).

Subscribing (what a drain uses)::

    subscription = hub.subscribe(app_id, since=cursor, tail=True, queue_lines=50_000)
    async for batch in subscription:        # lists of Line, oldest first
        await deliver(batch)
        save(subscription.cursor)          # the number of the last line read

- ``since=N`` gives every line numbered after N that the history still holds, then the new
  ones; ``lines=N`` the last N instead; neither, only new ones. ``match`` (a
  :class:`~dockyard.logs.lines.Filter`) keeps some. Call :meth:`LogHub.subscribe` on the
  event loop's thread.
- :attr:`Subscription.cursor` is the number of the last line given (or passed over by the
  filter). A drain saves it with what it delivered, and after a restart subscribes again with
  ``since=cursor``: it misses nothing and gets nothing twice.
- Back-pressure: a subscription queues at most ``queue_lines`` lines. When the reader falls
  further behind, new lines are dropped for it alone, counted in
  :attr:`Subscription.dropped`, and it reads a note line ``dockyard[logplex]: Error L10
  (output buffer overflow): N messages dropped`` where they were (numbered None; so is a
  note about lines older than the history holds). The hub and the other readers never wait.
- :meth:`Subscription.next_batch` takes a timeout (``[]`` when nothing came), for keep-alives;
  :meth:`Subscription.close` ends it. When the server stops, every subscription ends.

Drains (:mod:`dockyard.logs.drains`, the rows; :mod:`dockyard.logs.drain_urls`, the URLs;
:mod:`dockyard.logs.drain_delivery`, the senders; :mod:`dockyard.logs.drain_frames`, RFC 5424
and octet counting) are such subscribers, one per drain, whose cursor is kept on disk.

Rendering: :meth:`Line.render` gives ``2026-01-05T10:00:00.123456+00:00 app[web.1]:
message``; :attr:`Line.at` is the time in microseconds, :attr:`Line.source`/``process``
the ``app``/``web.1`` of the tag, which is what a syslog drain puts in its fields.
"""
