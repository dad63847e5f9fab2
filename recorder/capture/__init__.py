"""Live capture (``recorder run``): sharded, self-healing WebSocket/REST capture into the journal.

Pure decision cores (planning, budgets, backoff, healing, subscription state) live in
:mod:`~recorder.capture.shards`, :mod:`~recorder.capture.limits`,
:mod:`~recorder.capture.healing` and :mod:`~recorder.capture.subscriptions`; the asyncio shell
in :mod:`~recorder.capture.connection`, :mod:`~recorder.capture.rest_client`,
:mod:`~recorder.capture.service` (one worker process) and :mod:`~recorder.capture.supervisor`
(the parent that plans, spawns and restarts workers and serves ``/health`` and ``/metrics``).
"""
