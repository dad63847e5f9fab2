-- Archive.ohlc(every, symbol, start, end, clock)
SELECT * FROM ohlc_from_trades(every := CAST($every AS INTERVAL), sym := $sym,
                               start_at := $lo, end_at := $hi, clock := $clock)
