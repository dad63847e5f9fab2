-- Archive.trades(symbol, start, end): $sym / $lo / $hi may be NULL (no filter).
SELECT * FROM trades_unique
WHERE ($sym IS NULL OR symbol = $sym)
  AND ($lo IS NULL OR recv_ns >= $lo)
  AND ($hi IS NULL OR recv_ns <= $hi)
ORDER BY recv_ns, trade_id
