"""``recorder soak``: a chaos run of ``recorder run`` against ``recorder sim``, then a proof.

* :mod:`recorder.soak.schedule` — the pure plan: the sim fault specification (every fault kind,
  one chaos cycle per minute), the SIGKILL times, the disk-pressure window.
* :mod:`recorder.soak.compare` — the pure comparison of the archive with the sim's truth
  (:func:`~recorder.soak.compare.compare` -> :class:`~recorder.soak.compare.SoakReport`).
* :mod:`recorder.soak.archive_io` — reading an archive parent (every writer root) and a truth
  file into the plain inputs of the comparison; shared with the capture integration tests.
* :mod:`recorder.soak.run` — the thin orchestration shell (subprocesses, signals, balloon file).
* :mod:`recorder.soak.command` — the ``recorder soak`` click command (rich table, exit status).
"""
