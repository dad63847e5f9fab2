-- Where the trades a trade_id jump lost were: per `trade_id_jump` gap row (root, symbol,
-- start_ns), the last trade id received live at its start, the next live id after it (the
-- detection), and the exchange times of the REST-backfilled trades between the two. A dropped
-- frame is a point in time: the gap is drawn at its trades, not from the pair's last trade.
WITH g AS (
    SELECT DISTINCT root, symbol, start_ns FROM gaps
    WHERE cause = 'trade_id_jump' AND stream <> 'futures' AND symbol <> '*'
      AND start_ns < $hi AND coalesce(end_ns, $hi) >= $lo
),
prev AS (
    SELECT g.root, g.symbol, g.start_ns, max(t.trade_id) AS prev_id
    FROM g JOIN trades t ON t.symbol = g.symbol AND t.recv_ns <= g.start_ns
        AND t.source IN (0, 1) AND t.trade_id IS NOT NULL
    GROUP BY ALL
),
nxt AS (
    SELECT p.root, p.symbol, p.start_ns, p.prev_id, min(t.trade_id) AS next_id
    FROM prev p JOIN trades t ON t.symbol = p.symbol AND t.recv_ns > p.start_ns
        AND t.source IN (0, 1) AND t.trade_id > p.prev_id + 1
    GROUP BY ALL
)
SELECT n.root, n.symbol, n.start_ns, n.prev_id, n.next_id,
    count(DISTINCT t.trade_id) AS backfilled, min(t.ts_ns) AS first_ts_ns,
    max(t.ts_ns) AS last_ts_ns
FROM nxt n JOIN trades t ON t.symbol = n.symbol AND t.source = 2
    AND t.trade_id > n.prev_id AND t.trade_id < n.next_id
GROUP BY ALL
ORDER BY n.root, n.symbol, n.start_ns
