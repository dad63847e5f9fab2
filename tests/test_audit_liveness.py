"""What the audit needs from capture: ``liveness`` (schema version 2) places every subscription
to the nanosecond (``sub_from_ns``..``sub_to_ns``: the acknowledgement, the disconnect, the
resubscription of a resnapshot), so that a 0.25 s reconnect is not smeared over its minute; and
a clean stop's ``disconnect`` rows carry the capture's stop reason, which ends the recorded
window instead of counting as a gap."""

from __future__ import annotations

import json

from recorder.archive.schema import load_schemas
from recorder.frames import Frame
from recorder.pipeline import ListSink, Pipeline
from recorder.pipeline import markers as mk
from tests.archive_helpers import T0, trade_frame

S = 1_000_000_000


def _ack(recv_ns: int, conn_id: int, method: str = "subscribe") -> Frame:
    msg = {"method": method, "success": True, "req_id": 1,
           "result": {"channel": "trade", "symbol": "BTC/USD", "snapshot": True},
           "time_in": "2025-01-01T00:00:00.000000Z", "time_out": "2025-01-01T00:00:00.000100Z"}
    return Frame(recv_ns=recv_ns, conn_id=conn_id, stream="spot", direction="in",
                 payload=json.dumps(msg).encode())


def _heartbeat(recv_ns: int, conn_id: int) -> Frame:
    return Frame(recv_ns=recv_ns, conn_id=conn_id, stream="spot", direction="in",
                 payload=b'{"channel":"heartbeat"}')


def _rows(sink: ListSink, conn: int, channel: str = "trade") -> list[tuple]:
    return sorted((r["minute_ns"] - T0, r["subscribed_ns"],
                   None if r["sub_from_ns"] is None else r["sub_from_ns"] - T0,
                   None if r["sub_to_ns"] is None else r["sub_to_ns"] - T0)
                  for r in sink.rows("liveness") if r["conn_id"] == conn
                  and r["channel"] == channel)


def test_liveness_places_subscriptions_exactly() -> None:
    assert T0 % (60 * S) == 0
    sink = ListSink()
    p = Pipeline(sink)
    p.feed(mk.marker_frame(mk.ProcessStart(host="h", run_id="1", version="t"), T0))
    p.feed(mk.marker_frame(mk.Connected(conn_id=1, stream="spot"), T0 + S, 1))
    p.feed(_ack(T0 + 2 * S, 1))
    p.feed(trade_frame(T0 + 3 * S, 1))
    p.feed(_heartbeat(T0 + 4 * S, 1))
    # the connection drops 0.25 s after its last frame; a new one is acknowledged 0.5 s later
    p.feed(mk.marker_frame(mk.Disconnected(conn_id=1, reason="closed: no close frame"),
                           T0 + 4 * S + S // 4, 1))
    p.feed(mk.marker_frame(mk.Connected(conn_id=2, stream="spot"), T0 + 4 * S + S // 2, 2))
    p.feed(_ack(T0 + 4 * S + 3 * S // 4, 2))
    p.feed(trade_frame(T0 + 5 * S, 2, conn_id=2))
    # a resnapshot: unsubscribed (a trade still in flight), the venue's ack, subscribed again
    p.feed(mk.marker_frame(mk.Unsubscribed(conn_id=2, channel="trade", symbols=["BTC/USD"]),
                           T0 + 20 * S, 2))
    p.feed(trade_frame(T0 + 20 * S + 10, 3, conn_id=2))
    p.feed(_ack(T0 + 20 * S + 20, 2, method="unsubscribe"))
    p.feed(_ack(T0 + 20 * S + 30, 2))
    p.feed(trade_frame(T0 + 70 * S, 4, conn_id=2))  # the next minute
    p.feed(mk.marker_frame(mk.Disconnected(conn_id=2, reason=mk.STOP_REASON), T0 + 80 * S, 2))
    p.feed(mk.marker_frame(mk.ProcessStop(reason="signal"), T0 + 80 * S))
    p.close()
    assert _rows(sink, 1) == [(0, 2 * S + S // 4, 2 * S, 4 * S + S // 4)]
    # the resnapshot keeps the subscription's start (the pieces around it are one span)
    first, second = _rows(sink, 2)
    assert first[0] == 0 and first[2:] == (4 * S + 3 * S // 4, 60 * S)
    assert 60 * S - (4 * S + 3 * S // 4) - 30 <= first[1] <= 60 * S - (4 * S + 3 * S // 4)
    assert second == (60 * S, 20 * S, 60 * S, 80 * S)
    # heartbeats prove the connection alive; they are not a subscription
    (hb,) = _rows(sink, 1, "heartbeat")
    assert hb == (0, 0, None, None)
    # the clean stop: the disconnect row of the open epoch says so
    stops = [g for g in sink.rows("gaps") if g["detail"] == mk.STOP_REASON]
    assert stops and all(g["cause"] == "disconnect" for g in stops)


def test_liveness_schema_version_2_adds_nullable_columns_at_the_end() -> None:
    """The migration rule (schemas/README.md): a compatible change adds nullable columns at
    the end and bumps the version."""
    sch = load_schemas()["liveness"]
    assert sch.version == 2
    assert sch.names[-2:] == ["sub_from_ns", "sub_to_ns"]
    assert all(c.nullable for c in sch.columns if c.name in ("sub_from_ns", "sub_to_ns"))
