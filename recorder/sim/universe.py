"""The simulated exchange's instrument universe: spot pairs, assets and futures products.

A :class:`Universe` is built once at start-up by :func:`load_universe`, either

* from a recorded Spot WS v2 ``instrument`` snapshot message (read in place, decoded with
  ``float_hook=str`` so every JSON number keeps its exact source text, e.g. ``"1E-8"`` or
  ``"0.00010000"``), or
* generated from a seed, following the distribution of a real 683-pair snapshot.

Futures products come from a recorded ``/derivatives/api/v3/instruments`` list (the crawler's
reshaped form: a bare JSON array, or the full ``{"instruments": [...]}`` response) or are
generated.

Wire fidelity. ``SpotPair.wire`` (and each ``Universe.assets`` entry) is the pair/asset object
exactly as decoded: JSON strings stay ``str``, JSON numbers with a fraction or exponent are ``str`` holding the
exact token text, integers are ``int``, booleans ``bool``. On encoding, a ``str`` is a number
token when it has JSON number syntax and its key is not one of :data:`STRING_FIELDS` (a
fixture's number-like quoted string outside those keys would be emitted as a number). :func:`encode_wire` turns such an object back into JSON whose
tokens are byte-identical to the source.

Everything here is pure and deterministic: the same inputs and seed give the same universe.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

from recorder.errors import RecorderError

__all__ = [
    "STRING_FIELDS",
    "asset_wire",
    "FuturesProduct",
    "SpotPair",
    "Universe",
    "UniverseError",
    "encode_wire",
    "load_universe",
    "make_pair",
    "pair_from_wire",
]


class UniverseError(RecorderError, ValueError):
    """The instrument input is missing, malformed, or a requested symbol does not exist."""


#: Keys whose ``str`` values are JSON strings on the wire; every other ``str`` is a number token.
STRING_FIELDS: Final = frozenset(
    {"symbol", "base", "quote", "status", "id", "product_id", "pair", "tag", "type", "underlying"}
)


@dataclass(frozen=True, slots=True)
class SpotPair:
    """One spot pair. Numeric text fields hold exact decimal strings (never floats)."""

    symbol: str  #: v2 name, ``BTC/USD``
    base: str
    quote: str
    status: str  #: online, cancel_only, reduce_only, ...
    price_precision: int
    qty_precision: int
    price_increment: str
    qty_increment: str
    qty_min: str
    cost_min: str
    cost_precision: int
    ref_price: str  #: seeded starting price, exactly ``price_precision`` decimals
    wire: dict = field(hash=False, compare=False)  #: the instrument pair object (see module doc)


@dataclass(frozen=True, slots=True)
class FuturesProduct:
    """One futures product (perpetual or dated)."""

    product_id: str  #: upper-case, ``PF_XBTUSD``
    tag: str  #: perpetual, month, quarter
    pair: str  #: ``BTC:USD``
    tick_size: str
    contract_size: str
    price_precision: int  #: decimals of ``tick_size``
    qty_precision: int  #: ``contractValueTradePrecision`` (may be negative)
    maturity_ms: int | None  #: last trading time (epoch ms) of dated futures, None for perpetuals
    ref_price: str
    wire: dict = field(hash=False, compare=False)  #: the instruments-list object


@dataclass(frozen=True, slots=True)
class Universe:
    """All instruments of the simulated exchange."""

    assets: tuple[dict, ...]
    pairs: tuple[SpotPair, ...]
    futures: tuple[FuturesProduct, ...]
    _by_symbol: dict[str, SpotPair] = field(init=False, repr=False, compare=False, hash=False)
    _by_product: dict[str, FuturesProduct] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_symbol", {p.symbol: p for p in self.pairs})
        object.__setattr__(self, "_by_product", {f.product_id: f for f in self.futures})

    def pair(self, symbol: str) -> SpotPair:
        """The pair named ``symbol`` (v2 spelling); raises :class:`KeyError` if unknown."""
        return self._by_symbol[symbol]

    def has_pair(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    def product(self, product_id: str) -> FuturesProduct:
        """The futures product ``product_id`` (case-insensitive); :class:`KeyError` if unknown."""
        return self._by_product[product_id.upper()]

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(p.symbol for p in self.pairs)


# --------------------------------------------------------------------------------------------
# Wire encoding


_NUMBER_TOKEN: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _encode_value(key: str | None, value: Any, out: list[str]) -> None:
    if isinstance(value, bool) or value is None:
        out.append("true" if value is True else "false" if value is False else "null")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, str):
        if key is not None and key not in STRING_FIELDS and _NUMBER_TOKEN.fullmatch(value):
            out.append(value)  # exact number token
        else:
            out.append(msgspec.json.encode(value).decode())
    elif isinstance(value, Mapping):
        out.append("{")
        first = True
        for k, v in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(msgspec.json.encode(k).decode())
            out.append(":")
            _encode_value(k, v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            # list items inherit the key's kind (numbers stay numbers)
            _encode_value(key, v, out)
        out.append("]")
    else:  # pragma: no cover - decoded JSON has no other types
        raise TypeError(f"cannot encode {type(value).__name__}")


def encode_wire(obj: Mapping[str, Any]) -> str:
    """Compact JSON of a ``wire`` object with every number token emitted verbatim."""
    out: list[str] = []
    _encode_value(None, obj, out)
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Distribution constants of generated universes.
#
# Computed once from the real Spot WS v2 instrument snapshot (683 pairs, 296 assets) captured by
# torquey66/kraken-data-recorder (fixtures/kraken/kraken-data-recorder/instrument_snapshot.json),
# then hard-coded so that generation needs no fixture. Values are counts out of 683.

_PRICE_PRECISION_COUNTS: Final = {
    0: 7, 1: 22, 2: 78, 3: 132, 4: 181, 5: 129, 6: 51, 7: 30, 8: 42, 9: 9, 10: 2,
}
#: qty_precision 8 with qty_increment 1E-8 (627), qty_precision 5 with 0.00001 (56).
_QTY_PRECISION_COUNTS: Final = {8: 627, 5: 56}
_STATUS_COUNTS: Final = {"online": 672, "reduce_only": 9, "cancel_only": 2}
#: quote currency mix (top quotes; the tail is folded into the listed ones).
_QUOTE_COUNTS: Final = {
    "USD": 239, "EUR": 236, "BTC": 69, "ETH": 37, "GBP": 29, "USDT": 24, "JPY": 14,
    "AUD": 11, "CAD": 7, "CHF": 6, "USDC": 3,
}
#: cost_min token per quote currency (exactly as the snapshot spells it).
_COST_MIN_BY_QUOTE: Final = {
    "USD": "0.50", "EUR": "0.45", "BTC": "0.00002", "ETH": "0.00020", "GBP": "0.43",
    "USDT": "0.5000", "JPY": 50, "AUD": "1.00", "CAD": "1.00", "CHF": "0.50", "USDC": "0.5000",
}
#: cost_precision per quote: the snapshot's most common value for that quote.
_COST_PRECISION_BY_QUOTE: Final = {
    "USD": 5, "EUR": 5, "BTC": 9, "ETH": 8, "GBP": 5, "USDT": 8, "JPY": 3, "AUD": 5,
    "CAD": 5, "CHF": 5, "USDC": 8,
}
#: most common qty_min values (as multiples written with 8 decimals in the snapshot).
_QTY_MINS: Final = ("10", "5", "4", "0.5", "1.5", "1", "2", "7", "0.05", "20", "0.2", "25")
#: share of pairs that are marginable (174 / 683).
_MARGINABLE_SHARE: Final = 174 / 683
#: ``margin_initial`` tokens of the 174 marginable pairs.
_MARGIN_INITIAL_COUNTS: Final = {"0.33": 99, "0.50": 39, "0.25": 27, "0.20": 9}
#: ``collateral_value`` tokens of the 23 snapshot assets that have one (all others: 0.00).
_COLLATERAL_VALUE: Final = {
    "USD": "1.00", "EUR": "1.00", "GBP": "1.00", "AUD": "1.00", "CAD": "1.00", "JPY": "1.00",
    "CHF": "1.00", "BTC": "1.00", "ETH": "1.00", "USDC": "1.00", "LTC": "0.70", "ATOM": "0.70",
    "LINK": "0.70", "MANA": "0.70", "MATIC": "0.70", "USDT": "0.90", "ADA": "0.90",
    "DAI": "0.90", "DOT": "0.90", "SOL": "0.90", "XTZ": "0.50", "TRX": "0.50", "AVAX": "0.50",
}

#: Rough USD prices of well-known assets, for plausible reference prices.
_USD_PRICE: Final = {
    "USD": 1.0, "USDT": 1.0, "USDC": 1.0, "DAI": 1.0, "EUR": 1.13, "GBP": 1.33, "AUD": 0.64,
    "CAD": 0.72, "CHF": 1.21, "JPY": 0.0069, "AED": 0.27, "BTC": 95000.0, "ETH": 1800.0,
    "SOL": 150.0, "XRP": 2.2, "LTC": 90.0, "DOGE": 0.18, "ADA": 0.7, "DOT": 4.2, "LINK": 15.0,
    "XLM": 0.28, "BCH": 400.0, "AVAX": 22.0, "ATOM": 4.5, "TRX": 0.25, "XMR": 280.0,
    "ETC": 17.0, "UNI": 5.5, "AAVE": 190.0, "XTZ": 0.6, "ALGO": 0.2, "FIL": 2.7, "MATIC": 0.22,
    "POL": 0.22, "SHIB": 0.000014, "PEPE": 0.000009, "USDG": 1.0, "PYUSD": 1.0, "TUSD": 1.0,
}

#: Busy names preferred when narrowing with ``pairs=N``.
_BUSY: Final = (
    "BTC/USD", "ETH/USD", "SOL/USD", "XRP/USD", "BTC/EUR", "ETH/EUR", "USDT/USD", "DOGE/USD",
    "USDC/USD", "ADA/USD", "LTC/USD", "BTC/USDT", "ETH/BTC", "LINK/USD", "DOT/USD", "SOL/EUR",
    "XRP/EUR", "AVAX/USD", "BCH/USD", "ETH/USDT", "XLM/USD", "ATOM/USD", "BTC/GBP", "XMR/USD",
    "TRX/USD", "UNI/USD", "AAVE/USD", "ALGO/USD", "FIL/USD", "ETC/USD", "EUR/USD", "GBP/USD",
)

_MAJORS: Final = (
    "BTC", "ETH", "SOL", "XRP", "LTC", "DOGE", "ADA", "DOT", "LINK", "XLM", "BCH", "AVAX",
    "ATOM", "TRX", "XMR", "ETC", "UNI", "AAVE", "XTZ", "ALGO", "FIL", "POL", "SHIB", "PEPE",
)

_GENERATED_PAIRS: Final = 700

#: JSON decoder keeping every non-integer number as its exact source text.
_EXACT_DECODER: Final = msgspec.json.Decoder(float_hook=str)
_ASSET_NAME_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# --------------------------------------------------------------------------------------------
# Decimal text helpers (exact; floats only ever pick a *magnitude*, never an emitted digit)


def _decimals(token: str | int) -> int:
    """Number of decimals a number token implies (``"0.0010"`` -> 4, ``"1E-8"`` -> 8, ``1`` -> 0)."""
    if isinstance(token, int):
        return 0
    text = token.lower()
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        frac = mantissa.partition(".")[2]
        return max(0, len(frac) - int(exponent))
    return len(text.partition(".")[2])


def _fixed(units: int, precision: int) -> str:
    """``units / 10**precision`` as plain decimal text with exactly ``precision`` decimals."""
    if precision <= 0:
        return str(units)
    sign = "-" if units < 0 else ""
    digits = str(abs(units)).rjust(precision + 1, "0")
    return f"{sign}{digits[:-precision]}.{digits[-precision:]}"


def _increment_token(precision: int) -> str | int:
    """The increment spelling the real snapshot uses for a precision (1, 0.1 .. 0.000001, 1E-7..)."""
    if precision == 0:
        return 1
    if precision >= 7:
        return f"1E-{precision}"
    return _fixed(1, precision)


def _ref_price(rng: random.Random, base: str, quote: str, precision: int) -> str:
    """A plausible starting price with exactly ``precision`` decimals and >= ~1000 ticks."""
    base_usd, quote_usd = _USD_PRICE.get(base), _USD_PRICE.get(quote)
    value: float | None = None
    if base_usd is not None and quote_usd is not None:
        value = base_usd / quote_usd * rng.uniform(0.97, 1.03)
    min_ticks = 1000
    if value is None or value * 10**precision < min_ticks:
        # Log-uniform over the magnitude the precision implies (5-6 significant digits).
        value = 10 ** (rng.uniform(3.3, 5.3) - precision)
    units = max(min_ticks, int(round(value * 10**precision)))
    return _fixed(units, precision)


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random(":".join((str(seed), *parts)))


# --------------------------------------------------------------------------------------------
# Spot


def _pair_from_wire(obj: dict[str, Any], seed: int) -> SpotPair:
    try:
        symbol = obj["symbol"]
        base, quote = obj["base"], obj["quote"]
        price_precision = int(obj["price_precision"])
        qty_precision = int(obj["qty_precision"])
        price_increment = obj.get("price_increment", obj.get("tick_size"))
        pair = SpotPair(
            symbol=symbol,
            base=base,
            quote=quote,
            status=obj.get("status", "online"),
            price_precision=price_precision,
            qty_precision=qty_precision,
            price_increment=str(price_increment),
            qty_increment=str(obj["qty_increment"]),
            qty_min=str(obj["qty_min"]),
            cost_min=str(obj["cost_min"]),
            cost_precision=int(obj["cost_precision"]),
            ref_price=_ref_price(_rng(seed, "ref", symbol), base, quote, price_precision),
            wire=obj,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UniverseError(f"malformed instrument pair {obj.get('symbol')!r}: {exc!r}") from exc
    return pair


def pair_from_wire(obj: dict[str, Any], seed: int = 0) -> SpotPair:
    """A pair from its Spot WS v2 ``instrument`` object (number tokens as text); raises
    :class:`UniverseError` when a required attribute is missing or malformed."""
    return _pair_from_wire(obj, seed)


def _read_instrument_snapshot(path: Path) -> tuple[list[dict], list[dict]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UniverseError(f"cannot read instruments file {path}: {exc.strerror or exc}") from exc
    try:
        message = _EXACT_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise UniverseError(f"instruments file {path} is not JSON: {exc}") from exc
    data = message.get("data") if isinstance(message, dict) else None
    if isinstance(message, dict) and data is None and "pairs" in message:
        data = message  # a bare {"assets": [...], "pairs": [...]} object
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise UniverseError(
            f"{path} is not a Spot WS v2 instrument snapshot (expected data.pairs[])"
        )
    return list(data.get("assets") or []), data["pairs"]


def _weighted(rng: random.Random, counts: Mapping[Any, int]) -> Any:
    keys = list(counts)
    return rng.choices(keys, weights=[counts[k] for k in keys])[0]


def asset_wire(asset_id: str) -> dict[str, Any]:
    """An asset object in the instrument snapshot's shape (generated universes and assets of
    pairs listed at runtime): precision 4 for fiat and dollar-like assets, else 10; the real
    snapshot's collateral value for the assets that have one, else ``0.00``."""
    precision = 4 if asset_id in _USD_PRICE and _USD_PRICE[asset_id] < 2 else 10
    return {
        "id": asset_id,
        "status": "enabled",
        "precision": precision,
        "precision_display": min(precision, 5) if precision > 4 else 2,
        "borrowable": asset_id in _COLLATERAL_VALUE,
        "collateral_value": _COLLATERAL_VALUE.get(asset_id, "0.00"),
        "margin_rate": "0.020000",
    }



def _generated_wire(seed: int, base: str, quote: str, status: str | None = None) -> dict[str, Any]:
    """A pair object in the instrument snapshot's shape, drawn from the real distribution."""
    symbol = f"{base}/{quote}"
    prng = _rng(seed, "pair", symbol)
    if base in _USD_PRICE and quote in _USD_PRICE:
        # The precision that gives ~5-6 significant digits for the known price.
        magnitude = math.floor(math.log10(_USD_PRICE[base] / _USD_PRICE[quote]))
        price_precision = min(10, max(0, 5 - magnitude))
    else:
        price_precision = _weighted(prng, _PRICE_PRECISION_COUNTS)
    qty_precision = _weighted(prng, _QTY_PRECISION_COUNTS)
    if status is None:
        status = _weighted(prng, _STATUS_COUNTS) if symbol not in _BUSY else "online"
    qty_min_units = int(Decimal(prng.choice(_QTY_MINS)).scaleb(qty_precision))
    price_increment = _increment_token(price_precision)
    wire: dict[str, Any] = {
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "status": status,
        "qty_precision": qty_precision,
        "qty_increment": "1E-8" if qty_precision == 8 else _fixed(1, qty_precision),
        "price_precision": price_precision,
        "cost_precision": _COST_PRECISION_BY_QUOTE.get(quote, 5),
        "marginable": prng.random() < _MARGINABLE_SHARE,
        "has_index": True,
        "cost_min": _COST_MIN_BY_QUOTE.get(quote, "0.50"),
        "tick_size": price_increment,
        "price_increment": price_increment,
        "qty_min": _fixed(qty_min_units, qty_precision),
    }
    if wire["marginable"]:  # the real snapshot's margin fields of marginable pairs
        wire["margin_initial"] = _weighted(prng, _MARGIN_INITIAL_COUNTS)
        limit = int(float(f"{10 ** prng.uniform(2.0, 7.0):.2g}"))
        wire["position_limit_long"] = limit
        wire["position_limit_short"] = int(float(f"{limit * prng.uniform(0.5, 1.0):.2g}"))
    return wire


def make_pair(symbol: str, *, seed: int, status: str = "online") -> SpotPair:
    """A new generated pair ``BASE/QUOTE`` (for listings at runtime)."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise UniverseError(f"pair symbol must be BASE/QUOTE, got {symbol!r}")
    return _pair_from_wire(_generated_wire(seed, base, quote, status), seed)


def _generate_spot(seed: int, count: int = _GENERATED_PAIRS) -> tuple[list[dict], list[SpotPair]]:
    """``count`` pairs whose precision/status/quote mix follows the real snapshot."""
    rng = _rng(seed, "generate")
    # Base assets: the majors, then invented 3-5 letter tickers.
    bases: list[str] = list(_MAJORS)
    seen = set(bases) | set(_QUOTE_COUNTS)
    while len(bases) < count // 2 + 10:
        name = "".join(rng.choice(_ASSET_NAME_LETTERS) for _ in range(rng.randint(3, 5)))
        if name not in seen:
            seen.add(name)
            bases.append(name)
    symbols: list[tuple[str, str]] = []
    taken: set[str] = set()

    def add(base: str, quote: str) -> None:
        if base != quote and f"{base}/{quote}" not in taken and len(symbols) < count:
            taken.add(f"{base}/{quote}")
            symbols.append((base, quote))

    for sym in _BUSY:
        add(*sym.split("/"))
    for base in bases:  # every base gets a USD (and usually an EUR) market, like Kraken
        add(base, "USD")
        add(base, "EUR")
    while len(symbols) < count:
        add(rng.choice(bases), _weighted(rng, _QUOTE_COUNTS))

    pairs = [_pair_from_wire(_generated_wire(seed, base, quote), seed) for base, quote in symbols]
    asset_ids = sorted({p.base for p in pairs} | {p.quote for p in pairs})
    assets = [asset_wire(a) for a in asset_ids]
    return assets, pairs


def _narrow(pairs: Sequence[SpotPair], selection: int | list[str] | None) -> list[SpotPair]:
    if selection is None:
        return list(pairs)
    by_symbol = {p.symbol: p for p in pairs}
    if isinstance(selection, int) and not isinstance(selection, bool):
        if selection < 1:
            raise UniverseError(f"pairs must be >= 1, got {selection}")
        ordered: list[SpotPair] = []
        chosen: set[str] = set()

        def take(candidates: Iterable[SpotPair]) -> None:
            for p in candidates:
                if len(ordered) < selection and p.symbol not in chosen:
                    chosen.add(p.symbol)
                    ordered.append(p)

        take(by_symbol[s] for s in _BUSY if s in by_symbol and by_symbol[s].status == "online")
        take(p for p in pairs if p.status == "online")
        take(pairs)
        return ordered
    unknown = [s for s in selection if s not in by_symbol]
    if unknown:
        raise UniverseError(f"unknown pair(s): {', '.join(unknown)}")
    return [by_symbol[s] for s in dict.fromkeys(selection)]


# --------------------------------------------------------------------------------------------
# Futures


def _iso_to_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _futures_ref_price(rng: random.Random, pair: str, precision: int) -> str:
    base, _, quote = pair.partition(":")
    base = "BTC" if base == "XBT" else base
    return _ref_price(rng, base, quote or "USD", precision)


def _product_from_wire(obj: dict[str, Any], seed: int) -> FuturesProduct:
    try:
        product_id = str(obj["symbol"]).upper()
        prefix = product_id[:3]
        tick = obj.get("tickSize", "1")
        maturity_ms = _iso_to_ms(obj["lastTradingTime"]) if obj.get("lastTradingTime") else None
        if prefix in ("PF_", "PI_") or maturity_ms is None:
            tag = "perpetual"
        else:
            opening = obj.get("openingDate")
            span = maturity_ms - _iso_to_ms(opening) if opening else 0
            tag = "quarter" if span > 45 * 86_400_000 else "month"
        pair = obj.get("pair") or f"{obj.get('base', product_id[3:6])}:{obj.get('quote', 'USD')}"
        price_precision = _decimals(tick)
        return FuturesProduct(
            product_id=product_id,
            tag=tag,
            pair=pair,
            tick_size=str(tick),
            contract_size=str(obj.get("contractSize", 1)),
            price_precision=price_precision,
            qty_precision=int(obj.get("contractValueTradePrecision", 0)),
            maturity_ms=maturity_ms,
            ref_price=_futures_ref_price(_rng(seed, "fref", product_id), pair, price_precision),
            wire=obj,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UniverseError(f"malformed futures instrument {obj.get('symbol')!r}: {exc!r}") from exc


def _read_futures(path: Path) -> list[dict]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UniverseError(f"cannot read futures instruments file {path}: {exc.strerror or exc}") from exc
    try:
        doc = _EXACT_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise UniverseError(f"futures instruments file {path} is not JSON: {exc}") from exc
    if isinstance(doc, dict):
        doc = doc.get("instruments")
    if not isinstance(doc, list):
        raise UniverseError(f"{path} is not a futures instruments list")
    wanted = ("PF_", "PI_", "FI_", "FF_")
    return [i for i in doc if isinstance(i, dict) and str(i.get("symbol", "")).upper()[:3] in wanted]


#: Generated futures, one row per product of the real instruments list of 2025-05-06
#: (``fixtures/kraken/crypto-market-raw-data/kraken.futures.2025-05-06.json``): symbol, tickSize,
#: contractValueTradePrecision, impactMidSize, maxPositionSize, openingDate, isin, category,
#: margin tier table, lastTradingTime (dated only). Values are that list's, so a generated
#: instrument carries every field and value kind the real list carries.
_GEN_FUTURES: Final = (
    ("PF_XBTUSD", "1", 4, "0.07", "1200.0", "2022-03-22T13:15:36.000Z", "GB00BQ84JX13", "Layer 1", "wide", None),
    ("PF_ETHUSD", "0.1", 3, "3.5", "16000.0", "2022-03-22T13:18:45.000Z", "GB00BQ84K502", "Layer 1", "wide", None),
    ("PF_SOLUSD", "0.01", 2, "47.0", "200000.0", "2022-03-22T14:16:56.000Z", "GB00BQ84KP02", "Layer 1", "wide", None),
    ("PF_XRPUSD", "0.00001", 0, "2750.0", "50000000.0", "2022-03-22T14:12:21.000Z", "GB00BQ84KV61", "Layer 1", "wide", None),
    ("PF_LTCUSD", "0.01", 2, "56.0", "300000.0", "2022-03-22T14:39:25.000Z", "GB00BQ84KF04", "Layer 1", "narrow", None),
    ("PF_DOGEUSD", "0.000001", 0, "33750.0", "200000000.0", "2022-06-20T12:57:30.000Z", "GB00BQ84K163", "Community", "wide", None),
    ("PF_ADAUSD", "0.00001", 0, "7100.0", "60000000.0", "2022-03-22T14:11:11.000Z", "GB00BQ84JQ46", "Layer 1", "narrow", None),
    ("PF_LINKUSD", "0.001", 1, "350.0", "2000000.0", "2022-03-22T14:36:54.000Z", "GB00BQ84KB65", "DeFi", "narrow", None),
    ("PI_XBTUSD", "0.5", 0, "1000.0", "75000000.0", "2018-08-31T00:00:00.000Z", "GB00J62YGL67", "", "contracts", None),
    ("PI_ETHUSD", "0.05", 0, "1000.0", "45000000.0", "2018-08-31T00:00:00.000Z", "GB00J62YH022", "", "contracts", None),
    ("FI_XBTUSD_250530", "0.5", 0, "1000.0", "40000000.0", "2025-04-25T15:00:00.000Z", "GB00BSRJLP73", "Layer 1", "contracts", "2025-05-30T15:00:00.000Z"),
    ("FI_XBTUSD_250627", "0.5", 0, "1000.0", "40000000.0", "2024-11-29T16:00:01.000Z", "GB00BSRJLX57", "", "contracts", "2025-06-27T15:00:00.000Z"),
    ("FF_XBTUSD_250530", "1", 4, "0.05", "600.0", "2025-04-18T08:00:00.000Z", "GB00BQ84LD54", "Layer 1", "wide", "2025-05-30T08:00:00.000Z"),
    ("FF_XBTUSD_250627", "1", 4, "0.07", "600.0", "2024-11-29T08:00:00.000Z", "GB00BQ84LJ17", "Layer 1", "wide", "2025-06-27T08:00:00.000Z"),
    ("FI_ETHUSD_250530", "0.05", 0, "1000.0", "15000000.0", "2025-04-25T15:00:00.000Z", "GB00BSRJLQ80", "Layer 1", "contracts", "2025-05-30T15:00:00.000Z"),
    ("FI_ETHUSD_250627", "0.05", 0, "1000.0", "15000000.0", "2024-11-29T16:00:01.000Z", "GB00BSRJLY64", "", "contracts", "2025-06-27T15:00:00.000Z"),
    ("FF_ETHUSD_250530", "0.1", 3, "1.75", "8000.0", "2025-04-18T08:00:00.000Z", "GB00BQ84XW81", "Layer 1", "wide", "2025-05-30T08:00:00.000Z"),
    ("FF_ETHUSD_250627", "0.1", 3, "3.5", "8000.0", "2024-12-06T08:09:31.000Z", "GB00BQ84Y032", "Layer 1", "wide", "2025-06-27T08:00:00.000Z"),
)
#: Margin tiers of that list: lower bounds (quote units for flexible futures, contracts for
#: inverse ones) and the shared initial margins (maintenance = initial / 2).
_MARGIN_TIERS: Final = {
    "wide": ("0.0", "2000000.0", "5000000.0", "10000000.0", "30000000.0", "50000000.0", "150000000.0"),
    "narrow": ("0.0", "500000.0", "1500000.0", "3000000.0", "10000000.0", "20000000.0", "50000000.0"),
    "contracts": (0, 500000, 1500000, 3000000, 10000000, 20000000, 50000000),
}
_INITIAL_MARGINS: Final = ("0.02", "0.04", "0.05", "0.1", "0.2", "0.3", "0.5")
_MAINTENANCE_MARGINS: Final = ("0.01", "0.02", "0.025", "0.05", "0.1", "0.15", "0.25")
#: ``feeScheduleUid`` per product kind in that list.
_FEE_SCHEDULES: Final = {
    "PF": "723888f7-0a8e-4183-8648-f920a22339e3", "FF": "97ae0cc8-2964-43ea-91e9-d8e720b02b19",
    "PI": "a6cbc326-9477-4a6c-911a-d4cb3ed7481e", "FI": "a6cbc326-9477-4a6c-911a-d4cb3ed7481e",
}


def _margin_levels(tiers: str, first: int = 0) -> list[dict[str, Any]]:
    key = "contracts" if tiers == "contracts" else "numNonContractUnits"
    return [{key: bound, "initialMargin": im, "maintenanceMargin": mm}
            for bound, im, mm in list(zip(_MARGIN_TIERS[tiers], _INITIAL_MARGINS,
                                          _MAINTENANCE_MARGINS))[first:]]


def _futures_wire(row: tuple[Any, ...]) -> dict[str, Any]:
    """A complete instruments-list object, in the field order of the real list."""
    symbol, tick, cvp, impact, max_position, opening, isin, category, tiers, last_trading = row
    kind = symbol[:2]
    base = symbol[3:].partition("_")[0][:-3]
    wire_base = "BTC" if base == "XBT" else base
    inverse = kind in ("PI", "FI")
    levels = _margin_levels(tiers)
    retail_floor = _margin_levels(tiers)[:1]
    retail_floor[0].update(initialMargin="0.5", maintenanceMargin="0.25")
    europa_retail = _margin_levels(tiers, first=2)
    europa_retail[0][("contracts" if inverse else "numNonContractUnits")] = levels[0][
        "contracts" if inverse else "numNonContractUnits"]
    wire: dict[str, Any] = {"symbol": symbol, "type": "futures_inverse" if inverse else "flexible_futures"}
    if inverse:
        wire["underlying"] = f"rr_{base.lower()}usd"
    wire.update(tickSize=tick, contractSize=1, tradeable=True, impactMidSize=impact,
                maxPositionSize=max_position, openingDate=opening, marginLevels=levels)
    if kind in ("PF", "PI"):
        wire.update(fundingRateCoefficient=24, maxRelativeFundingRate="0.0025")
    wire.update(isin=isin, contractValueTradePrecision=cvp, postOnly=False,
                feeScheduleUid=_FEE_SCHEDULES[kind],
                retailMarginLevels=retail_floor if inverse else _margin_levels(tiers),
                marginSchedules={
                    "dlt": {"professional": _margin_levels(tiers), "retail": retail_floor},
                    "dlt_onboarding": {"professional": _margin_levels(tiers), "retail": retail_floor},
                    "europa": {"professional": _margin_levels(tiers), "retail": europa_retail},
                },
                category=category, tags=[], tradfi=False, mtf=True, base=wire_base, quote="USD",
                pair=f"{wire_base}:USD")
    if last_trading is not None:
        wire["lastTradingTime"] = last_trading
    return wire


def _generate_futures(seed: int) -> list[FuturesProduct]:
    return [_product_from_wire(_futures_wire(row), seed) for row in _GEN_FUTURES]


# --------------------------------------------------------------------------------------------


def load_universe(
    instruments_path: Path | None,
    *,
    pairs: int | list[str] | None,
    futures_path: Path | None,
    seed: int,
) -> Universe:
    """Build the universe.

    ``instruments_path``: a recorded Spot WS v2 ``instrument`` snapshot message, or None to
    generate ~700 pairs. ``pairs``: None keeps all, an int keeps that many (busy online names
    such as BTC/USD and ETH/USD first, then other online pairs in source order), a list keeps
    exactly those symbols (unknown names raise :class:`UniverseError`). Assets are narrowed to
    those the kept pairs reference. ``futures_path``: a recorded futures instruments list
    (perpetual PF_/PI_ and dated FI_/FF_ products are kept), or None to generate a small set.
    """
    if instruments_path is not None:
        raw_assets, raw_pairs = _read_instrument_snapshot(Path(instruments_path))
        spot = [_pair_from_wire(p, seed) for p in raw_pairs if isinstance(p, dict)]
        assets = raw_assets
    else:
        assets, spot = _generate_spot(seed)
    spot = _narrow(spot, pairs)
    used = {p.base for p in spot} | {p.quote for p in spot}
    kept_assets = tuple(a for a in assets if isinstance(a, dict) and a.get("id") in used)
    if futures_path is not None:
        futures = [_product_from_wire(i, seed) for i in _read_futures(Path(futures_path))]
    else:
        futures = _generate_futures(seed)
    return Universe(assets=kept_assets, pairs=tuple(spot), futures=tuple(futures))
