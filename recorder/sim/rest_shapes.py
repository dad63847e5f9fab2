"""Kraken Spot REST answer shapes of the simulated exchange: names, keys and number text.

Pure functions, no I/O. Every rule here is taken from real captures under
``fixtures/kraken`` or Kraken's own API documentation; the sources and the assumptions where
Kraken's behaviour is unknown are listed in ``docs/kraken-rest.md``.

Names. A pair has a v2 symbol (``BTC/USD``), a REST ``wsname`` (``XBT/USD``), an ``altname``
(``XBTUSD``) and a canonical REST key. The canonical key joins the legacy asset codes
(``XXBTZUSD``) only for the pairs listed before Kraken stopped prefixing (the set below, read
from a full 2021 ``AssetPairs`` answer); every later pair is keyed by its altname (``SOLUSD``,
``XBTUSDT``), and so is ``DOGE/USD`` (``XDGUSD``, confirmed against the live API in 2026).

Numbers. REST prices of ``Depth``, ``Trades``, ``Ticker`` and ``Spread`` are written with
``max(pair_decimals, cost_decimals)`` decimals (``"105944.30000"`` for XBT/USDT: 1 and 5);
``OHLC`` prices keep ``pair_decimals`` (``"106038.2"``). Volumes are written with
``lot_decimals``, except ``Depth`` volumes and the ticker's best-level volumes, which Kraken
shows with three decimals (``"0.136"``, ``"1.000"``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import msgspec

from recorder.protocol.numbers import to_units, token_to_text, units_to_text

if TYPE_CHECKING:
    from recorder.sim.universe import SpotPair

__all__ = [
    "ASSET_PAIR_INFO_LEVELS",
    "asset_code",
    "asset_info",
    "asset_pair_info",
    "ceil_volume",
    "epoch_seconds",
    "pad_price",
    "pair_key",
    "plain",
    "rest_price_decimals",
    "rfc1123",
    "v1_name",
    "whole_lot",
    "wsname",
]

#: v2 asset -> Kraken's legacy REST asset code (every X/Z code of the 2025 ``AssetPairs`` list).
_LEGACY: Final = {
    "BTC": "XXBT", "ETH": "XETH", "LTC": "XLTC", "XRP": "XXRP", "XLM": "XXLM", "XMR": "XXMR",
    "ETC": "XETC", "ZEC": "XZEC", "REP": "XREP", "MLN": "XMLN", "DOGE": "XXDG",
    "USD": "ZUSD", "EUR": "ZEUR", "GBP": "ZGBP", "JPY": "ZJPY", "CAD": "ZCAD", "AUD": "ZAUD",
}
#: v2 asset -> REST / WS v1 spelling.
_V1: Final = {"BTC": "XBT", "DOGE": "XDG"}
#: altnames whose canonical key joins the legacy asset codes (``XBTUSD`` -> ``XXBTZUSD``): the
#: 59 such pairs of the full ``AssetPairs`` answer in ``fixtures/kraken/cryptofeed/KRAKEN.0``.
_LEGACY_KEYED: Final = frozenset({
    "USDTUSD", "ETCETH", "ETCXBT", "ETCEUR", "ETCUSD", "ETHXBT", "ETHCAD", "ETHEUR", "ETHGBP",
    "ETHJPY", "ETHUSD", "LTCXBT", "LTCEUR", "LTCJPY", "LTCUSD", "MLNETH", "MLNXBT", "MLNEUR",
    "MLNUSD", "REPETH", "REPXBT", "REPEUR", "REPUSD", "XBTCAD", "XBTEUR", "XBTGBP", "XBTJPY",
    "XBTUSD", "XDGXBT", "XLMXBT", "XLMAUD", "XLMEUR", "XLMGBP", "XLMUSD", "XMRXBT", "XMREUR",
    "XMRUSD", "XRPXBT", "XRPCAD", "XRPEUR", "XRPJPY", "XRPUSD", "ZECXBT", "ZECEUR", "ZECUSD",
    "EURUSD", "GBPUSD", "USDCAD", "USDJPY",
})
#: Fiat and dollar/euro-pegged assets: a pair of two of them has the stable fee schedule.
_STABLE: Final = frozenset({
    "USD", "EUR", "GBP", "AUD", "CAD", "CHF", "JPY", "USDT", "USDC", "DAI", "PYUSD", "TUSD",
    "USDG", "USDQ", "USDR", "USDS", "USDD", "RLUSD", "EURT", "EURQ", "EURR",
})
#: Fee schedules of the 2025 ``AssetPairs`` list (960 and 62 of its 1032 pairs); a zero fee is
#: written ``0.0`` as in the 2025 captures (a 2021 capture wrote ``0``).
_FEES: Final = ((0, 0.4), (10000, 0.35), (50000, 0.24), (100000, 0.22), (250000, 0.2),
                (500000, 0.18), (1000000, 0.16), (2500000, 0.14), (5000000, 0.12), (10000000, 0.1))
_FEES_MAKER: Final = ((0, 0.25), (10000, 0.2), (50000, 0.14), (100000, 0.12), (250000, 0.1),
                      (500000, 0.08), (1000000, 0.06), (2500000, 0.04), (5000000, 0.02),
                      (10000000, 0.0))
_STABLE_FEES: Final = ((0, 0.2), (50000, 0.16), (100000, 0.12), (250000, 0.08), (500000, 0.04),
                       (1000000, 0.02), (10000000, 0.01), (100000000, 0.001))
_STABLE_FEES_MAKER: Final = ((0, 0.2), (50000, 0.16), (100000, 0.12), (250000, 0.08),
                             (500000, 0.04), (1000000, 0.02), (10000000, 0.0), (100000000, 0.0))
#: WS v2 asset status -> REST ``Assets`` status.
_ASSET_STATUS: Final = {
    "enabled": "enabled", "depositonly": "deposit_only", "withdrawalonly": "withdrawal_only",
    "fundingtemporarilydisabled": "funding_temporarily_disabled",
}
#: ``AssetPairs`` ``info`` levels: the answer's field -> the full entry's field it copies
#: (``info``: the full entry). ``margin`` answers ``margin_level`` for the stop-out level.
ASSET_PAIR_INFO_LEVELS: Final = {
    "leverage": {"leverage_buy": "leverage_buy", "leverage_sell": "leverage_sell"},
    "fees": {"fees": "fees", "fees_maker": "fees_maker", "fee_volume_currency": "fee_volume_currency"},
    "margin": {"margin_call": "margin_call", "margin_level": "margin_stop"},
}
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")


def v1_name(asset: str) -> str:
    """REST / WS v1 spelling of a v2 asset (``BTC`` -> ``XBT``, ``DOGE`` -> ``XDG``)."""
    return _V1.get(asset, asset)


def asset_code(asset: str) -> str:
    """REST asset code of a v2 asset (``BTC`` -> ``XXBT``, ``USD`` -> ``ZUSD``, ``SOL`` -> ``SOL``)."""
    return _LEGACY.get(asset, asset)


def wsname(pair: SpotPair) -> str:
    return f"{v1_name(pair.base)}/{v1_name(pair.quote)}"


def pair_key(pair: SpotPair) -> str:
    """Kraken's canonical REST key of a pair (``XXBTZUSD``, ``XDGUSD``, ``SOLUSD``)."""
    altname = v1_name(pair.base) + v1_name(pair.quote)
    if altname in _LEGACY_KEYED:
        return asset_code(pair.base) + asset_code(pair.quote)
    return altname


def plain(token: str | int) -> str:
    """Decimal text without exponent and without trailing zeros (``ordermin`` style)."""
    text = token_to_text(token)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def rest_price_decimals(pair: SpotPair) -> int:
    """Decimals of REST Depth/Trades/Ticker/Spread prices: ``max(pair_decimals, cost_decimals)``."""
    return max(pair.price_precision, pair.cost_precision)


def ceil_volume(units: int, precision: int, decimals: int = 3) -> str:
    """``units / 10**precision`` rounded up to ``decimals`` decimals (Depth volumes)."""
    if precision <= decimals:
        return units_to_text(units * 10 ** (decimals - precision), decimals)
    step = 10 ** (precision - decimals)
    return units_to_text(-(-units // step), decimals)


def whole_lot(units: int, precision: int) -> int:
    """The ticker's whole lot volume: the best level's volume rounded up to an integer."""
    step = 10**precision
    return -(-units // step)


def epoch_seconds(t_ns: int) -> msgspec.Raw:
    """A trade time as Kraken writes it: epoch seconds as the shortest decimal of the nearest
    double (``1762795433.9717445``)."""
    return msgspec.Raw(repr(t_ns / 1_000_000_000).encode())


def rfc1123(epoch_s: int) -> str:
    """``Time``'s ``rfc1123`` text (``Tue, 11 Nov 25 00:17:04 +0000``), locale-independent."""
    import time

    t = time.gmtime(epoch_s)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year % 100:02d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")


def _ratio(token: Any) -> msgspec.Raw:
    """An exact ratio token (``"1.00"``) as a raw JSON number with at least one decimal
    (``1.0``, ``0.9``), as Kraken writes ``collateral_value``."""
    text = plain(token)
    return msgspec.Raw((text if "." in text else text + ".0").encode())


def asset_info(asset: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(result key, entry)`` of one ``Assets`` entry from a WS v2 instrument asset object.

    ``collateral_value`` appears only for assets that have one (> 0), as in Kraken's answers.
    """
    asset_id = str(asset["id"])
    entry: dict[str, Any] = {
        "aclass": "currency",
        "altname": v1_name(asset_id),
        "decimals": int(asset.get("precision", 10)),
        "display_decimals": int(asset.get("precision_display", 5)),
    }
    collateral = asset.get("collateral_value")
    if collateral is not None and Decimal(token_to_text(collateral)) > 0:
        entry["collateral_value"] = _ratio(collateral)
    status = str(asset.get("status", "enabled"))
    entry["status"] = _ASSET_STATUS.get(status, status)
    return asset_code(asset_id), entry


def _leverage(wire: dict[str, Any]) -> list[int]:
    """Leverage levels of a marginable pair: 2 .. floor(1 / margin_initial)."""
    if not wire.get("marginable") or wire.get("margin_initial") is None:
        return []
    top = int(Decimal(1) / Decimal(token_to_text(wire["margin_initial"])) + Decimal("1e-9"))
    return list(range(2, top + 1))


def _lot(lot_decimals: int) -> str:
    return "unit" if lot_decimals == 8 else f"unit{lot_decimals}"


def asset_pair_info(pair: SpotPair, status: str, info: str = "info") -> dict[str, Any]:
    """One ``AssetPairs`` entry; ``info`` other than ``"info"`` keeps only that level's fields."""
    wire = pair.wire
    stable = pair.base in _STABLE and pair.quote in _STABLE
    leverage = _leverage(wire)
    entry: dict[str, Any] = {
        "altname": v1_name(pair.base) + v1_name(pair.quote),
        "wsname": wsname(pair),
        "aclass_base": "currency",
        "base": asset_code(pair.base),
        "aclass_quote": "currency",
        "quote": asset_code(pair.quote),
        "lot": _lot(pair.qty_precision),
        "cost_decimals": pair.cost_precision,
        "pair_decimals": pair.price_precision,
        "lot_decimals": pair.qty_precision,
        "lot_multiplier": 1,
        "leverage_buy": leverage,
        "leverage_sell": list(leverage),
        "fees": [list(tier) for tier in (_STABLE_FEES if stable else _FEES)],
        "fees_maker": [list(tier) for tier in (_STABLE_FEES_MAKER if stable else _FEES_MAKER)],
        "fee_volume_currency": "ZUSD",
        "margin_call": 80,
        "margin_stop": 40,
        "ordermin": plain(pair.qty_min),
        "costmin": plain(pair.cost_min),
        "tick_size": plain(pair.price_increment),
        "status": status,
    }
    if leverage and "position_limit_long" in wire:
        entry["long_position_limit"] = int(wire["position_limit_long"])
        entry["short_position_limit"] = int(wire.get("position_limit_short", 0))
    fields = ASSET_PAIR_INFO_LEVELS.get(info)
    return entry if fields is None else {name: entry[source] for name, source in fields.items()}


def pad_price(text: str, pair_decimals: int, decimals: int) -> str:
    """A price at ``pair_decimals`` rewritten with ``decimals`` decimals (exact)."""
    return units_to_text(to_units(text, pair_decimals) * 10 ** (decimals - pair_decimals), decimals)
