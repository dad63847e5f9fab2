-- Archive.gaps(symbols, channels): $syms / $chans are lists or NULL (no filter); `*` rows
-- (all symbols / channels) are always included.
SELECT * FROM gaps
WHERE ($syms IS NULL OR symbol = '*' OR list_contains($syms, symbol))
  AND ($chans IS NULL OR channel = '*' OR list_contains($chans, channel))
ORDER BY start_ns
