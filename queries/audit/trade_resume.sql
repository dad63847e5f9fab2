-- Spot trade disconnects: were trades missed across them? Per trade-channel `disconnect` gap
-- (root, symbol, start_ns): the greatest trade_id received at or before the gap's start and
-- the smallest recorded trade_id above it (live or REST backfill, any root: ids are the
-- exchange's, per symbol). `missed` is true when ids between the two were never recorded,
-- false when the next recorded id follows directly, null when either side is unknown (then no
-- trade_id jump shows a loss). See recorder/audit/coverage.py:gap_extent.
WITH g AS (
    SELECT DISTINCT root, symbol, start_ns FROM gaps
    WHERE cause = 'disconnect' AND channel = 'trade' AND stream <> 'futures' AND symbol <> '*'
      AND start_ns < $hi AND coalesce(end_ns, $hi) >= $lo
),
ids AS (
    SELECT symbol, trade_id, recv_ns FROM trades WHERE trade_id IS NOT NULL
),
before AS (
    SELECT g.root, g.symbol, g.start_ns, max(i.trade_id) AS last_id
    FROM g LEFT JOIN ids i ON i.symbol = g.symbol AND i.recv_ns <= g.start_ns
    GROUP BY ALL
),
nxt AS (
    SELECT b.root, b.symbol, b.start_ns, b.last_id, min(i.trade_id) AS next_id
    FROM before b LEFT JOIN ids i ON i.symbol = b.symbol AND i.trade_id > b.last_id
    GROUP BY ALL
)
SELECT root, symbol, start_ns, last_id, next_id,
    CASE WHEN last_id IS NULL OR next_id IS NULL THEN NULL
         ELSE next_id > last_id + 1 END AS missed
FROM nxt
ORDER BY root, symbol, start_ns
