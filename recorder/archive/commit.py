"""One commit split at its cut: a fast half on the caller's thread, the I/O half anywhere.

A commit makes the rows derived up to a *cut* visible together with the journal positions
and the pipeline state at that cut (:meth:`recorder.archive.store.ArchiveStore.commit`).
:meth:`recorder.archive.session.Deriver.begin_commit` takes the cut where frames are fed and
returns a :class:`PendingCommit`; the cut only hands over and copies, it builds nothing: the
partition writer's buffered tables are taken whole, the pipeline's row buffers are handed over
whole and its state copied with each spot book's containers instead of its text checkpoint
(:meth:`recorder.pipeline.Pipeline.cut`, a few C-level copies per book), the journal
positions copied. Its :meth:`~PendingCommit.finish` does the rest and the slow part: the cut's
rows turned into Arrow tables behind the taken ones, the state's book checkpoints built
(equal to :meth:`~recorder.pipeline.Pipeline.to_state` at the cut, so the state file is
byte for byte the same), journal flush, Parquet seal, state file, manifest. It may run in
another thread while frames keep being fed: it reads only what the cut handed over or copied,
never the live pipeline or buffers. If it fails, :meth:`~PendingCommit.abort` (on the feeding
thread) puts the taken rows back in front of the newer ones, so the next commit writes them;
nothing committed is touched.

Exactly once holds as before: the manifest names the journal positions of the cut, the
state file is the pipeline at the cut, and the files hold exactly the rows derived before it.
After a kill -9 during :meth:`~PendingCommit.finish`, recovery deletes the files no manifest
lists and re-derives the journal from the previous commit's positions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recorder.archive.store import ArchiveStore, PartitionWriter, SealBatch
from recorder.pipeline.core import PipelineCut

__all__ = ["PendingCommit", "GilYield"]


class GilYield:
    """Called between units of pure-Python work in a thread that is not the event loop's:
    once ``every_s`` has passed since the last pause, sleeps ``sleep_s`` so that a thread
    waiting for the GIL (the loop: after each socket read or write it must take it again)
    gets it now rather than after the interpreter's switch interval (5 ms), which the loop
    could otherwise wait several times in one iteration. A zero sleep would not do: the
    GIL is not handed over then, and the waiter's switch-interval wait starts again."""

    __slots__ = ("every_s", "sleep_s", "_last")

    def __init__(self, every_s: float = 0.001, sleep_s: float = 0.0001) -> None:
        self.every_s = every_s
        self.sleep_s = sleep_s
        self._last = time.perf_counter()

    def __call__(self) -> None:
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            time.sleep(self.sleep_s)
            self._last = time.perf_counter()


@dataclass(slots=True)
class PendingCommit:
    """The cut of one commit (see module docstring). Finish it at most once; commits of one
    archive must finish in the order they were cut (one at a time)."""

    archive: ArchiveStore
    writer: PartitionWriter
    batch: SealBatch
    #: the pipeline at the cut: its rows (built into ``batch`` first) and its state
    cut: PipelineCut
    journal: dict[str, int]
    segments: list[str]
    sources: dict[str, dict[str, Any]]
    #: makes the journal durable up to (at least) the cut; runs first in :meth:`finish`
    before: Callable[[], None] | None = None

    #: the cut's rows have been built into ``batch``
    built: bool = False

    @property
    def rows(self) -> int:
        """Rows this commit seals (the writer's taken tables and the cut's own rows)."""
        return self.batch.rows if self.built else self.batch.rows + self.cut.row_count

    def build(self, pause: Callable[[], None] | None = None) -> None:
        """Turn the column sets the batch took unbuilt, then the cut's row buffers, into Arrow
        tables behind the batch's (once); ``pause`` is called after each column built."""
        if not self.built:
            # column sets a deferred writer took unbuilt are older than the cut's rows
            self.writer.build_unbuilt(self.batch, pause)
            for dataset, columns in self.cut.rows(pause):
                self.writer.append_to(self.batch, dataset, columns, pause)
            self.built = True

    def finish(self, pause: Callable[[], None] | None = None) -> None:
        """The cut's rows and state built, journal flush, Parquet seal, state file and
        manifest (atomic): the slow half.

        Thread-safe with respect to frames being fed meanwhile. ``pause``: called between
        units of the building (a :class:`GilYield` when this runs beside an event loop).
        Raises the archive's or the journal's write error; then call :meth:`abort` on the
        feeding thread."""
        self.build(pause)
        state = self.cut.state(pause)
        if self.before is not None:
            self.before()
        entries = self.writer.seal_batch(self.batch, self.archive.state.commit + 1)
        self.archive.commit(entries, pipeline=state, journal=self.journal,
                            segments=self.segments, sources=self.sources)
        # committed: the state and tables are freed here, not on the thread (the event loop)
        # that drops this object later
        del state
        self.cut.release()
        self.batch.tables.clear()

    def abort(self) -> None:
        """The commit failed: hand its rows back to the writer (call on the feeding thread;
        the cut's rows are built here if :meth:`finish` failed before building them)."""
        self.build()
        self.writer.restore(self.batch)
