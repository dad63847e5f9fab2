-- Frames (or parts) the pipeline could not decode or apply in [$lo, $hi), by stream, stage
-- and reason: how many, for how many symbols, when, and one example detail.
SELECT stream, stage, reason, count(*) AS rejects,
    count(DISTINCT symbol) AS symbols, min(recv_ns) AS first_ns, max(recv_ns) AS last_ns,
    min(detail) AS example
FROM rejects
WHERE recv_ns >= $lo AND recv_ns < $hi
GROUP BY ALL
ORDER BY rejects DESC, stream, stage, reason
