-- Archive.epochs(symbol, channel)
SELECT * FROM epochs
WHERE ($sym IS NULL OR symbol = $sym) AND ($chan IS NULL OR channel = $chan)
ORDER BY channel, symbol, start_ns
