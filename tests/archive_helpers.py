"""Shared helpers for archive tests (synthetic frames)."""

from __future__ import annotations

from recorder.frames import Frame

T0 = 1_735_689_600_000_000_000


def trade_frame(recv_ns: int, trade_id: int, symbol: str = "BTC/USD", conn_id: int = 1) -> Frame:
    ts = "2025-01-01T00:00:00.000000Z"
    payload = (
        '{"channel":"trade","type":"update","data":[{"symbol":"%s","side":"buy",'
        '"price":95000.1,"qty":0.00100000,"ord_type":"market","trade_id":%d,'
        '"timestamp":"%s"}]}' % (symbol, trade_id, ts)
    ).encode()
    return Frame(recv_ns=recv_ns, conn_id=conn_id, stream="spot", direction="in",
                 payload=payload)


def make_sim_record(path, messages: int = 3000, pairs: int = 4, seed: int = 1):
    """Write a deterministic `recorder sim --record` stream to ``path``."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "recorder", "sim", "--record", str(path),
                    "--messages", str(messages), "--pairs", str(pairs), "--seed", str(seed)],
                   check=True, capture_output=True)
    return path
