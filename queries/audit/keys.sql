-- Every (channel, symbol) the audited roots recorded or subscribed from a day before $lo to a
-- day after $hi: the keys the archive holds around the range. A key held there but with
-- nothing inside the range is missing in it (a day the recorder was down is 0 %, not empty).
SELECT DISTINCT
    CASE WHEN stream = 'futures' AND channel IN ('book', 'futures_book') THEN 'futures_book'
         WHEN stream = 'futures' AND channel IN ('trade', 'futures_trade') THEN 'futures_trade'
         WHEN stream = 'futures' AND channel = 'ticker' THEN 'futures_ticker'
         ELSE channel END AS channel,
    symbol
FROM liveness
WHERE channel NOT IN ('heartbeat', 'instrument') AND symbol <> ''
  AND minute_ns >= $lo - 86400000000000 AND minute_ns < $hi + 86400000000000
ORDER BY channel, symbol
