-- Archive.ohlc(every, symbols, start, end, clock): $every_us is the bucket width in
-- microseconds; $syms a list or NULL (every symbol; one symbol is filtered inside the macro).
SELECT * FROM ohlc_from_trades(every := to_microseconds($every_us::BIGINT),
                               sym := CASE WHEN len($syms) = 1 THEN $syms[1] END,
                               start_at := $lo, end_at := $hi, clock := $clock)
WHERE $syms IS NULL OR list_contains($syms, symbol)
