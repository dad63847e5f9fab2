"""The settings that decide which rows a derivation writes, fixed when it starts.

Two derivations of the same journal write the same rows only if they run with the same
:class:`DeriveSettings`. So the settings are a property of an archive, not of a run: they are
chosen when the archive's pipeline is created, stored with every commit (in the pipeline state,
:mod:`recorder.pipeline.state`) and journaled with each
:class:`~recorder.pipeline.markers.ProcessStart`, so that ``recorder ingest`` of a live journal
into a fresh archive, and ``recorder repair``, derive with the settings live capture used. Nothing
changes them after construction. (Commit cadence is not among them: a commit seals rows, it
never changes which rows there are.)
"""

from __future__ import annotations

from typing import Final

import msgspec

__all__ = ["DeriveSettings", "DEFAULT_CHECKPOINT_INTERVAL_NS", "DEFAULT_CHECKPOINT_MESSAGES"]

#: A book checkpoint every 15 minutes of receive time per epoch, by default.
DEFAULT_CHECKPOINT_INTERVAL_NS: Final = 15 * 60 * 1_000_000_000
#: ... and every 2,000 messages of an epoch (bounds a replay from the nearest checkpoint).
DEFAULT_CHECKPOINT_MESSAGES: Final = 2_000


class DeriveSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What decides the derived rows besides the frames themselves.

    ``checkpoint_interval_ns``: an ``interval`` book checkpoint every this many ns of receive
    time of an epoch; ``checkpoint_messages``: also every this many messages of an epoch
    (0: time only)."""

    checkpoint_interval_ns: int = DEFAULT_CHECKPOINT_INTERVAL_NS
    checkpoint_messages: int = DEFAULT_CHECKPOINT_MESSAGES

    def __post_init__(self) -> None:
        if self.checkpoint_interval_ns <= 0:
            raise ValueError(f"checkpoint_interval_ns must be > 0, not {self.checkpoint_interval_ns}")
        if self.checkpoint_messages < 0:
            raise ValueError(f"checkpoint_messages must be >= 0, not {self.checkpoint_messages}")
