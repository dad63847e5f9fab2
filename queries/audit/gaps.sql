-- Every gap row that can touch the audit range (open-ended rows included), with its root
-- (conn_id names a connection only within that root).
SELECT start_ns, end_ns, stream,
    CASE WHEN stream = 'futures' AND channel IN ('book', 'futures_book') THEN 'futures_book'
         WHEN stream = 'futures' AND channel IN ('trade', 'futures_trade') THEN 'futures_trade'
         WHEN stream = 'futures' AND channel = 'ticker' THEN 'futures_ticker'
         ELSE channel END AS channel,
    symbol, root, conn_id, cause, missing, missing_count, healed_by, detail
FROM gaps
WHERE start_ns < $hi AND coalesce(end_ns, $hi) >= $lo
ORDER BY start_ns, channel, symbol, root
