"""``recorder replay``: a recorded archive served as Kraken's own wire.

The replay runs on the simulator's server (:class:`recorder.sim.server.SimServer`): one server,
two sources of market -- the generated one (``recorder sim``) and a recorded archive (this
package). Clients connect to the same endpoints (Spot WS v2 ``/v2``, level3 ``/l3/v2``,
Futures WS ``/ws/v1``, Spot and Futures REST) and get, for every subscription the archive can
serve, Kraken's ack, a snapshot rebuilt from the archive at the replay clock, then the
recorded frames byte for byte. See ``docs/replay.md``.

Modules: :mod:`~recorder.replay.frames` (what a recorded frame is, pure),
:mod:`~recorder.replay.coverage` (where the archive holds a valid book, pure),
:mod:`~recorder.replay.render` (Kraken snapshot frames from rebuilt state, pure),
:mod:`~recorder.replay.clock` (the replay clock, pure), :mod:`~recorder.replay.source`
(journal frames in receive order), :mod:`~recorder.replay.catalog` (what the archive holds),
:mod:`~recorder.replay.rebuild` (state at a time, from the archive),
:mod:`~recorder.replay.market` (routing recorded frames to subscriptions),
:mod:`~recorder.replay.rest` (REST answers as of the replay clock),
:mod:`~recorder.replay.ws` (the WebSocket endpoints), :mod:`~recorder.replay.server` and
:mod:`~recorder.replay.command` (``recorder replay``).
"""
