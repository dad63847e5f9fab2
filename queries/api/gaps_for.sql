-- Archive.gaps(symbol, channel): `*` rows (all symbols / channels) always included.
SELECT * FROM gaps
WHERE ($sym IS NULL OR symbol IN ($sym, '*'))
  AND ($chan IS NULL OR channel IN ($chan, '*'))
ORDER BY start_ns
