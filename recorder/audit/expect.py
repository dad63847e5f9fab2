"""What the audit expects to find recorded (``--expect``): pure parsing and key sets.

Keys the archive holds are always audited. On top of them, an *expectation* adds keys that
should have been recorded, so that a pair, channel or window with no recording at all counts as
missing (0 %) instead of disappearing from the report:

* ``recorded``: nothing more;
* ``online``: every spot pair that was ``online`` at some time in the range (the
  ``instruments`` dataset), on every spot channel the audited roots record; keys that a
  sibling root records (another worker of the same capture, audited separately) are theirs;
* a comma list of ``SYMBOL`` (every channel of its kind that the archive records: spot
  channels for ``BASE/QUOTE`` pairs, ``futures_*`` channels for futures products) and
  ``CHANNEL:SYMBOL`` items;
* ``auto`` (the default): ``online`` when the audited roots hold instrument data valid in the
  range (a capture archive), else ``recorded``.

Symbols given with ``--symbols`` are expected too: asking about a symbol that was never
recorded gets a missing symbol, not an empty, 100 % report. A symbol whose kind has no channel
in the archive is expected on the pseudo-channel ``*`` (any channel).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from recorder.audit.coverage import Key
from recorder.errors import RecorderError

__all__ = ["ANY_CHANNEL", "MODES", "Expectation", "ExpectError", "parse_expect",
           "is_futures_channel", "expected_keys"]

#: The pseudo-channel of an expected symbol whose kind has no channel in the archive.
ANY_CHANNEL: Final = "*"
MODES: Final = ("auto", "recorded", "online")


class ExpectError(RecorderError, ValueError):
    """An ``--expect`` value that cannot be understood."""


@dataclass(frozen=True, slots=True)
class Expectation:
    """``mode`` is one of :data:`MODES` or ``"list"`` (explicit ``symbols`` / ``keys``)."""

    mode: str = "auto"
    symbols: tuple[str, ...] = ()
    keys: tuple[Key, ...] = ()


def parse_expect(text: str | None) -> Expectation:
    """``None``/``""`` -> ``auto``; ``auto``/``recorded``/``online``; else a comma list of
    ``SYMBOL`` and ``CHANNEL:SYMBOL`` items. Raises :class:`ExpectError`."""
    if text is None or not text.strip():
        return Expectation()
    t = text.strip()
    if t in MODES:
        return Expectation(mode=t)
    symbols: list[str] = []
    keys: list[Key] = []
    for item in (p.strip() for p in t.split(",")):
        if not item:
            continue
        channel, sep, symbol = item.partition(":")
        if sep:
            if not channel or not symbol:
                raise ExpectError(f"{item!r}: expected CHANNEL:SYMBOL, e.g. book:BTC/USD")
            keys.append((channel, symbol))
        else:
            symbols.append(item)
    if not symbols and not keys:
        raise ExpectError(f"{text!r}: give auto, recorded, online, or a comma list of "
                          "SYMBOL / CHANNEL:SYMBOL")
    return Expectation(mode="list", symbols=tuple(symbols), keys=tuple(keys))


def is_futures_channel(channel: str) -> bool:
    return channel.startswith("futures_")


def _channels_of(symbol: str, channels: set[str]) -> list[str]:
    """The archive's channels of ``symbol``'s kind (spot pairs are ``BASE/QUOTE``)."""
    futures = "/" not in symbol
    return sorted(c for c in channels if is_futures_channel(c) == futures) or [ANY_CHANNEL]


def expected_keys(expectation: Expectation, *, recorded: Iterable[Key], channels: Iterable[str],
                  online: Iterable[str], sibling_keys: Iterable[Key] = (),
                  symbols: Iterable[str] | None = None) -> tuple[set[Key], str]:
    """The keys to audit and the mode applied (``auto`` resolved).

    ``recorded``: the keys the audited roots hold; ``channels``: the channels they record
    (``instrument``/``heartbeat`` excluded); ``online``: spot pairs online in the range;
    ``sibling_keys``: keys recorded by sibling roots; ``symbols``: the ``--symbols`` filter
    (its symbols are expected too)."""
    have = set(recorded)
    chans = set(channels)
    online_list = sorted(set(online))
    mode = expectation.mode
    if mode == "auto":
        mode = "online" if online_list else "recorded"
    keys = set(have)
    if mode == "online":
        spot = sorted(c for c in chans if not is_futures_channel(c))
        theirs = set(sibling_keys)
        keys |= {(c, p) for p in online_list for c in spot if (c, p) not in theirs}
    elif mode == "list":
        for sym in expectation.symbols:
            keys |= {(c, sym) for c in _channels_of(sym, chans)}
        keys |= set(expectation.keys)
    if symbols is not None:
        wanted = set(symbols)
        keys = {k for k in keys if k[1] in wanted}
        for sym in wanted - {s for _, s in keys}:
            keys |= {(c, sym) for c in _channels_of(sym, chans)}
    return keys, mode
