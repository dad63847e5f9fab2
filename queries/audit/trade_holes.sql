-- The remaining trade_id holes (first 1000): the ids on both sides and their receive times.
WITH ids AS (
    SELECT symbol, trade_id, min(recv_ns) AS recv_ns FROM trades
    WHERE recv_ns >= $lo AND recv_ns < $hi AND trade_id IS NOT NULL
    GROUP BY ALL
),
steps AS (
    SELECT symbol, trade_id, recv_ns,
        lag(trade_id) OVER w AS prev_id, lag(recv_ns) OVER w AS prev_recv_ns
    FROM ids WINDOW w AS (PARTITION BY symbol ORDER BY trade_id)
)
SELECT symbol, prev_id + 1 AS first_missing, trade_id - 1 AS last_missing,
    prev_recv_ns, recv_ns
FROM steps WHERE trade_id > prev_id + 1
ORDER BY symbol, first_missing
LIMIT 1000
