-- Proof of listening per (root, connection, minute): the first and last receive time of
-- anything the connection delivered (data or heartbeats), and its subscribed stretch's bounds
-- (liveness version 2; null in version 1 files). The audit takes a disconnect gap's start
-- from the last frame before the disconnect, and a root's recorder runs from these spans.
SELECT root, conn_id, minute_ns,
    min(first_ns) AS first_ns, max(last_ns) AS last_ns,
    min(sub_from_ns) AS sub_from_ns, max(sub_to_ns) AS sub_to_ns,
    sum(frames) AS frames
FROM liveness
WHERE minute_ns >= $lo - 86400000000000 AND minute_ns < $hi
GROUP BY ALL
ORDER BY root, conn_id, minute_ns
