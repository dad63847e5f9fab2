-- Archive.bbo(symbol, start, end, channel, clock): the top of book after every message.
SELECT * FROM bbo_series($sym, $lo, $hi, channel := $chan, clock := $clock)
