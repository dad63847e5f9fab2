"""Live capture (``recorder run``): sharded, self-healing WebSocket/REST capture into the archive.

**One pipeline.** Every frame a worker receives or sends (WebSocket data and requests, REST
bodies as ``Frame(stream="rest", meta="GET /0/public/Trades?...")``) and every control marker
(connects/disconnects, subscribe outcomes, silence, rate limits, quarantines, resync requests,
backfills, process start/stop, disk pressure) goes through
:class:`recorder.archive.session.ArchiveSession`: journal first, then the archive's pipeline -
the same frames -> events -> rows code ``recorder ingest`` runs. The pipeline's signals (book
desyncs, trade-id and futures seq gaps, subscription acks/refusals, instrument changes and
snapshots) drive healing; its rows include ``gaps``, ``epochs`` and ``liveness``. Capture has no
validator, no journal and no frame parser of its own: what it needs to know about the data
comes from the pipeline's signals (:mod:`recorder.pipeline.signals`) and public counters
(``Pipeline.counters``, ``Pipeline.activity``: per-symbol data on a connection). The derivation
settings are the root's (fixed when it was created, journaled with ``ProcessStart``), so its
journal re-derives to exactly the rows capture wrote (``tests/test_capture_rederive.py``).

**Writer layout.** Each worker *process* owns one complete archive root::

    <archive_root>/<writer_id>/          writer_id = <host>-w<k>   (k = worker index)
        journal/ data/ _manifest/ _state/   the archive's layout (recorder.archive.layout)
        _capture/rates.json                 measured rates for the next shard planning

``<host>`` is the configured ``host`` (default: the machine's name, made file-name safe), so
several hosts running ``--shard K/N`` can write into one shared parent without collisions.
Each root has its own writer lock, journal, Parquet files, manifest and pipeline state; a
restarted worker reopens its root, re-derives the journal tail a crash left uncommitted, and
records the downtime as a ``gaps`` row with cause ``process_restart``. Readers treat the parent
as the union of its roots (:func:`recorder.capture.writer.writer_roots`); ``recorder verify``
and ``recorder ingest`` work on one root.

Modules: pure decision cores (planning, budgets, backoff, healing, subscription state, the
disk guard) in :mod:`~recorder.capture.shards`, :mod:`~recorder.capture.limits`,
:mod:`~recorder.capture.healing`, :mod:`~recorder.capture.subscriptions` and
:mod:`~recorder.capture.writer`; the asyncio shell in :mod:`~recorder.capture.connection`,
:mod:`~recorder.capture.rest_client`, :mod:`~recorder.capture.service` (one worker process: a
composition of parts under one task group, each owning its state:
:mod:`~recorder.capture.archive_part` (write path, commits cut on the loop and finished in a
commit thread, disk guard), :mod:`~recorder.capture.connections_part`,
:mod:`~recorder.capture.subscriptions_part` (answers, listings, level3 budget),
:mod:`~recorder.capture.healing_part`, :mod:`~recorder.capture.status_part` (with the event
loop's lag, :mod:`~recorder.capture.looplag`), sharing :mod:`~recorder.capture.control`),
:mod:`~recorder.capture.scheduler` (its periodic jobs) and :mod:`~recorder.capture.supervisor`
(the parent that plans, spawns and restarts workers and serves ``/health`` and ``/metrics``).
"""
