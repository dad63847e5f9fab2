-- 1-minute OHLC bars (the last update received of each bar) against the recorded trades of
-- the same minute: trade count, and traded volume as an exact integer of 1e-18 units (the
-- loader compares it with the bar's exact decimal volume text).
WITH bars AS (
    SELECT symbol, interval_begin_ns,
        arg_max(trades, recv_ns) AS bar_trades,
        arg_max(volume, recv_ns) AS bar_volume
    FROM ohlc
    WHERE interval = 1 AND interval_begin_ns >= $lo AND interval_begin_ns < $hi
    GROUP BY ALL
),
tr AS (
    SELECT symbol, ts_ns - ts_ns % 60000000000 AS interval_begin_ns,
        count(*) AS n,
        sum(CAST(qty AS HUGEINT) * CAST(pow(10, 18 - qty_scale) AS HUGEINT)) AS vol_e18
    FROM (SELECT DISTINCT ON (symbol, trade_id) * FROM trades
          WHERE ts_ns >= $lo AND ts_ns < $hi AND qty IS NOT NULL)
    GROUP BY ALL
)
SELECT b.symbol, b.interval_begin_ns, b.bar_trades, coalesce(t.n, 0) AS trades,
    b.bar_volume, coalesce(t.vol_e18, 0) AS vol_e18
FROM bars b LEFT JOIN tr t USING (symbol, interval_begin_ns)
ORDER BY b.symbol, b.interval_begin_ns
