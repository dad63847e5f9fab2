"""Order books: exact, pure state machines fed with decoded messages.

Spot books live in :mod:`recorder.book.l2` (``book`` channel) and
:mod:`recorder.book.l3` (``level3`` channel); their checkpoints in
:mod:`recorder.book.checkpoint`. Import submodules directly; this package module only
re-exports the spot book API for convenience.
"""

from __future__ import annotations

from recorder.book.checkpoint import (
    L2Checkpoint,
    L3Checkpoint,
    L3OrderState,
    decode_checkpoint,
    encode_checkpoint,
)
from recorder.book.l2 import L2Book, L2BookData, L2Level, L2Result, Side
from recorder.book.l3 import L3Book, L3BookData, L3OrderEvent, L3Result, OrderView

__all__ = [
    "Side",
    "L2Level",
    "L2BookData",
    "L2Result",
    "L2Book",
    "L3OrderEvent",
    "L3BookData",
    "L3Result",
    "OrderView",
    "L3Book",
    "L2Checkpoint",
    "L3Checkpoint",
    "L3OrderState",
    "encode_checkpoint",
    "decode_checkpoint",
]
