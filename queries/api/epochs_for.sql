-- Archive.epochs(symbols, channels): $syms / $chans are lists or NULL (no filter).
SELECT * FROM epochs
WHERE ($syms IS NULL OR list_contains($syms, symbol))
  AND ($chans IS NULL OR list_contains($chans, channel))
ORDER BY channel, symbol, start_ns
