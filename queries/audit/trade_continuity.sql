-- trade_id continuity per symbol after REST backfill: ids by source, duplicates and the holes
-- that remain between consecutive distinct ids (missing_ids = ids never recorded).
WITH t AS (
    SELECT symbol, trade_id, source FROM trades
    WHERE recv_ns >= $lo AND recv_ns < $hi AND trade_id IS NOT NULL
),
ids AS (
    SELECT symbol, trade_id, count(*) AS n FROM t GROUP BY ALL
),
steps AS (
    SELECT symbol, trade_id,
        trade_id - lag(trade_id) OVER (PARTITION BY symbol ORDER BY trade_id) - 1 AS hole, n
    FROM ids
)
SELECT s.symbol,
    (SELECT count(*) FROM t WHERE t.symbol = s.symbol) AS trades,
    (SELECT count(*) FILTER (WHERE source IN (0, 1)) FROM t WHERE t.symbol = s.symbol) AS ws_trades,
    (SELECT count(*) FILTER (WHERE source = 2) FROM t WHERE t.symbol = s.symbol) AS rest_trades,
    min(s.trade_id) AS first_id, max(s.trade_id) AS last_id,
    count(*) AS distinct_ids,
    count(*) FILTER (WHERE s.hole > 0) AS holes,
    coalesce(sum(s.hole) FILTER (WHERE s.hole > 0), 0) AS missing_ids,
    sum(s.n - 1) AS duplicates
FROM steps s
GROUP BY s.symbol
ORDER BY s.symbol
