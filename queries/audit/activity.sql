-- When (channel, symbol) was delivering data: per minute the span from its first to its last
-- receive time, spans closer than $quiet_ns merged into runs. Covered time outside these runs
-- is quiet: subscribed, connection alive, and no data for at least $quiet_ns (default 10 s).
WITH m AS (
    SELECT
        CASE WHEN stream = 'futures' AND channel IN ('book', 'futures_book') THEN 'futures_book'
             WHEN stream = 'futures' AND channel IN ('trade', 'futures_trade') THEN 'futures_trade'
             WHEN stream = 'futures' AND channel = 'ticker' THEN 'futures_ticker'
             ELSE channel END AS channel,
        symbol, first_ns, last_ns + 1 AS end_ns
    FROM liveness
    WHERE frames > 0 AND channel NOT IN ('heartbeat', 'instrument') AND symbol <> ''
      AND first_ns IS NOT NULL
      AND minute_ns >= $lo - 60000000000 AND minute_ns < $hi
),
b AS (
    SELECT *,
        CASE WHEN first_ns - max(end_ns) OVER (
                 PARTITION BY channel, symbol ORDER BY first_ns, end_ns
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) < $quiet_ns
             THEN 0 ELSE 1 END AS brk
    FROM m
),
r AS (
    SELECT *, sum(brk) OVER (PARTITION BY channel, symbol ORDER BY first_ns, end_ns
                             ROWS UNBOUNDED PRECEDING) AS island
    FROM b
)
SELECT channel, symbol, min(first_ns) AS start_ns, max(end_ns) AS end_ns
FROM r
GROUP BY channel, symbol, island
ORDER BY channel, symbol, start_ns
