"""Kraken's symbol grammar: which strings may become a ``symbol`` / ``product_id`` in the archive.

Derived from Kraken's documentation (``kraken-protocol.md`` section 1) and every symbol of the
real captures under ``fixtures/kraken`` (a test checks them all):

* **spot** (WS v2 ``symbol``, v1 ``pair``, REST ``wsname``): ``BASE/QUOTE``, each side an
  asset code of ASCII letters and digits with an optional ``.SUFFIX`` (``BTC/USD``,
  ``1INCH/EUR``, tokenized ``AAPLx/USD``, staked ``ETH2.S/ETH``);
* **asset** (``instrument`` channel asset ids): one asset code (``BTC``, ``USD.HOLD``);
* **futures** (``product_id``): a two-letter kind, ``_``, the underlying, and an optional
  ``_YYMMDD`` expiry (``PF_XBTUSD``, ``PI_XBTUSD``, ``FI_XBTUSD_250627``, ``PF_AAPLxUSD``; old
  captures use lower case: ``pi_xbtusd``, ``in_xbtusd``, ``rr_xbtusd``);
* **rest** (REST ``pair`` keys and parameters): a spot symbol or a pair key without the slash
  (``XXBTZUSD``, ``XBTUSDT``, ``AAPLxUSD``);
* **any**: a rest or futures symbol (control markers, which name either).

Everything else is refused with an explanation: control characters such as NUL (``BTC/USD\\0``
prints exactly like ``BTC/USD``), whitespace, quotes, path separators other than the one
``/``, ``..``, SQL-looking text, non-ASCII look-alikes, and anything longer than
:data:`MAX_SYMBOL_LENGTH`.

Pure functions, no state: callers memoise per distinct string (the pipeline keeps a bounded
set of the symbols it has accepted, so the hot path is one set lookup).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, Literal

__all__ = ["MAX_SYMBOL_LENGTH", "SymbolKind", "symbol_problem", "is_futures_symbol"]

#: Longest accepted symbol; Kraken's longest seen is 16 (``FI_XBTUSD_250627``).
MAX_SYMBOL_LENGTH: Final = 32

SymbolKind = Literal["spot", "asset", "futures", "rest", "any"]

_ASSET: Final = r"[A-Za-z0-9]{1,16}(?:\.[A-Za-z0-9]{1,8})?"
_GRAMMAR: Final[dict[str, re.Pattern[str]]] = {
    "spot": re.compile(rf"{_ASSET}/{_ASSET}"),
    "asset": re.compile(_ASSET),
    "futures": re.compile(r"[A-Za-z]{2}_[A-Za-z0-9]{1,24}(?:_[0-9]{6})?"),
    "rest": re.compile(rf"{_ASSET}(?:/{_ASSET})?"),
}
_GRAMMAR["any"] = re.compile(f"{_GRAMMAR['futures'].pattern}|{_GRAMMAR['rest'].pattern}")
_EXPECTED: Final[dict[str, str]] = {
    "spot": "BASE/QUOTE of ASCII letters and digits (e.g. BTC/USD)",
    "asset": "an asset code of ASCII letters and digits (e.g. BTC)",
    "futures": "a product id such as PF_XBTUSD or FI_XBTUSD_250627",
    "rest": "a pair such as BTC/USD or XXBTZUSD",
    "any": "a spot pair (BTC/USD) or a futures product id (PF_XBTUSD)",
}


def is_futures_symbol(symbol: str) -> bool:
    """True when ``symbol`` has the form of a Futures product id (``PF_XBTUSD``)."""
    return _GRAMMAR["futures"].fullmatch(symbol) is not None


def symbol_problem(symbol: object, kind: SymbolKind) -> str | None:
    """None when ``symbol`` is a valid ``kind`` symbol, else why not (one short sentence).

    The explanation names the first offending character by its Unicode name and position
    (``U+0000 NULL at 7``), so a symbol that prints like a valid one is still told apart."""
    if not isinstance(symbol, str):
        return f"not a string ({type(symbol).__name__})"
    if not symbol:
        return "empty"
    if len(symbol) > MAX_SYMBOL_LENGTH:
        return f"too long ({len(symbol)} > {MAX_SYMBOL_LENGTH} characters)"
    if _GRAMMAR[kind].fullmatch(symbol) is not None:
        return None
    for i, ch in enumerate(symbol):
        if unicodedata.category(ch)[0] in "CZ" or ch.isspace():
            return f"contains {_char(ch)} at {i}"
        if not ch.isascii():
            return f"contains the non-ASCII character {_char(ch)} at {i}"
    if ".." in symbol:
        return "contains '..'"
    if "\\" in symbol or symbol.count("/") > 1 or symbol.startswith("/"):
        return "contains a path separator"
    bad = next((ch for ch in symbol if not (ch.isalnum() or ch in "/._")), None)
    if bad is not None:
        return f"contains {bad!r} at {symbol.index(bad)}"
    return f"not {_EXPECTED[kind]}"


def _char(ch: str) -> str:
    name = unicodedata.name(ch, "")
    if not name and unicodedata.category(ch) == "Cc":
        name = "(a control character)"
    return f"U+{ord(ch):04X}{' ' + name if name else ''}"
