-- Spot pairs online at some time in [$lo, $hi): the status valid at $lo (the last row of the
-- pair before it: `instruments` is a slowly changing dimension, one row per change) or any
-- row inside the range. What `--expect online` expects to be recorded.
WITH p AS (
    SELECT symbol, recv_ns, status, change FROM instruments WHERE kind = 'pair'
),
at_lo AS (
    SELECT symbol, arg_max(status, recv_ns) AS status, arg_max(change, recv_ns) AS change
    FROM p WHERE recv_ns < $lo GROUP BY symbol
),
inside AS (
    SELECT DISTINCT symbol FROM p
    WHERE recv_ns >= $lo AND recv_ns < $hi AND status = 'online' AND change <> 'delisted'
)
SELECT symbol FROM at_lo WHERE status = 'online' AND change <> 'delisted'
UNION
SELECT symbol FROM inside
ORDER BY symbol
