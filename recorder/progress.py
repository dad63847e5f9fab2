"""Progress bars for long commands (ingest, verify, compact, repair, audit).

A bar shows what is being done, how far (``count`` or ``count/total``), the rate per second
and, once a total is known, the time remaining. It is drawn on **stderr** and only when stderr
is a terminal, so piped, logged and machine (JSON) output never contains one; commands pass
``enabled=False`` for ``--json``/``--quiet`` as well. A disabled bar costs one attribute test
per :meth:`ProgressBar.advance`.

    with progress_bar("verify", total=rows, unit="rows", enabled=not as_json) as bar:
        for chunk in work:
            ...
            bar.advance(len(chunk))
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

__all__ = ["ProgressBar", "StepNote", "progress_bar", "progress_steps", "stderr_is_terminal"]

#: ``note(step, done, total)``: step ``step`` has done ``done`` of ``total`` units.
StepNote = Callable[[str, int, int], None]


def stderr_is_terminal(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (default: ``sys.stderr``) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressBar:
    """One bar (or nothing, when disabled). Create it with :func:`progress_bar`."""

    def __init__(self, progress: Any | None, task: Any | None) -> None:
        self._progress = progress
        self._task = task

    @property
    def enabled(self) -> bool:
        """Whether a bar is actually drawn."""
        return self._progress is not None

    def advance(self, n: int = 1) -> None:
        """``n`` more units done."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, *, total: int | None = None, description: str | None = None) -> None:
        """Set (or learn) the total, or change the description."""
        if self._progress is not None:
            kwargs: dict[str, Any] = {}
            if total is not None:
                kwargs["total"] = total
            if description is not None:
                kwargs["description"] = description
            self._progress.update(self._task, **kwargs)


@contextmanager
def progress_bar(description: str, total: int | None = None, *, unit: str = "",
                 enabled: bool = True, stream: IO[str] | None = None) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` on ``stream`` (default stderr) for the ``with`` block; a disabled
    one unless ``enabled`` and the stream is a terminal. The bar disappears when the block ends.
    """
    if not (enabled and stderr_is_terminal(stream)):
        yield ProgressBar(None, None)
        return
    progress = _progress(unit, stream)
    with progress:
        yield ProgressBar(progress, progress.add_task(description, total=total))


@contextmanager
def progress_steps(*, unit: str = "", enabled: bool = True,
                   stream: IO[str] | None = None) -> Iterator[StepNote | None]:
    """One bar per named step, for work reported as ``note(step, done, total)`` (e.g. the
    audit's stages); None (nothing to call) unless ``enabled`` and on a terminal."""
    if not (enabled and stderr_is_terminal(stream)):
        yield None
        return
    progress = _progress(unit, stream)
    with progress:
        tasks: dict[str, Any] = {}

        def note(step: str, done: int, total: int) -> None:
            task = tasks.get(step)
            if task is None:
                task = tasks[step] = progress.add_task(step, total=max(total, 1))
            progress.update(task, completed=done, total=max(total, 1))

        yield note


def _progress(unit: str, stream: IO[str] | None) -> Any:
    """A transient rich ``Progress``: description, bar, done/total, unit, rate, elapsed, ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class _Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            label = f"{unit}/s" if unit else "/s"
            if speed is None:
                return Text(f"- {label}", style="progress.data.speed")
            return Text(f"{speed:,.0f} {label}", style="progress.data.speed")

    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TextColumn(unit), _Rate(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(),
                    console=Console(file=stream or sys.stderr), transient=True)
