"""One commit split at its cut: a fast half on the caller's thread, the I/O half anywhere.

A commit makes the rows derived up to a *cut* visible together with the journal positions
and the pipeline state at that cut (:meth:`recorder.archive.store.ArchiveStore.commit`).
:meth:`recorder.archive.session.Deriver.begin_commit` takes the cut where frames are fed (the
pipeline's buffered rows handed to the partition writer, whose buffers are taken whole; the
pipeline state and the journal positions copied) and returns a :class:`PendingCommit`. Its
:meth:`~PendingCommit.finish` does the slow part (journal flush, Parquet seal, state file,
manifest) and may run in another thread while frames keep being fed: it reads only what the
cut copied, never the live pipeline or buffers. If it fails, :meth:`~PendingCommit.abort`
(on the feeding thread) puts the taken rows back in front of the newer ones, so the next
commit writes them; nothing committed is touched.

Exactly once holds as before: the manifest names the journal positions of the cut, the
state file is the pipeline at the cut, and the files hold exactly the rows derived before it.
After a kill -9 during :meth:`~PendingCommit.finish`, recovery deletes the files no manifest
lists and re-derives the journal from the previous commit's positions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recorder.archive.store import ArchiveStore, PartitionWriter, SealBatch
from recorder.pipeline.state import PipelineState

__all__ = ["PendingCommit"]


@dataclass(slots=True)
class PendingCommit:
    """The cut of one commit (see module docstring). Finish it at most once; commits of one
    archive must finish in the order they were cut (one at a time)."""

    archive: ArchiveStore
    writer: PartitionWriter
    batch: SealBatch
    state: PipelineState
    journal: dict[str, int]
    segments: list[str]
    sources: dict[str, dict[str, Any]]
    #: makes the journal durable up to (at least) the cut; runs first in :meth:`finish`
    before: Callable[[], None] | None = None

    @property
    def rows(self) -> int:
        """Rows this commit seals."""
        return self.batch.rows

    def finish(self) -> None:
        """Journal flush, Parquet seal, state file and manifest (atomic): the slow half.

        Thread-safe with respect to frames being fed meanwhile. Raises the archive's or the
        journal's write error; then call :meth:`abort` on the feeding thread."""
        if self.before is not None:
            self.before()
        entries = self.writer.seal_batch(self.batch, self.archive.state.commit + 1)
        self.archive.commit(entries, pipeline=self.state, journal=self.journal,
                            segments=self.segments, sources=self.sources)

    def abort(self) -> None:
        """The commit failed: hand its rows back to the writer (call on the feeding thread)."""
        self.writer.restore(self.batch)
