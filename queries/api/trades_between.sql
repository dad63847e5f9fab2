-- Archive.trades(symbols, start, end): $syms (a list) / $lo / $hi may be NULL (no filter).
SELECT * FROM trades_unique
WHERE ($syms IS NULL OR list_contains($syms, symbol))
  AND ($lo IS NULL OR recv_ns >= $lo)
  AND ($hi IS NULL OR recv_ns <= $hi)
ORDER BY recv_ns, trade_id
