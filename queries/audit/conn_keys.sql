-- Which connections carried which (channel, symbol): wildcard gaps of one connection
-- (silence, disconnect) apply only to the keys that connection carried. Connection ids are
-- unique only within one archive root: (root, conn_id) names a connection.
SELECT DISTINCT root, conn_id,
    CASE WHEN stream = 'futures' AND channel IN ('book', 'futures_book') THEN 'futures_book'
         WHEN stream = 'futures' AND channel IN ('trade', 'futures_trade') THEN 'futures_trade'
         WHEN stream = 'futures' AND channel = 'ticker' THEN 'futures_ticker'
         ELSE channel END AS channel,
    symbol
FROM liveness
WHERE channel NOT IN ('heartbeat', 'instrument') AND symbol <> ''
  AND minute_ns >= $lo - 86400000000000 AND minute_ns < $hi
