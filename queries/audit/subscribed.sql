-- Subscription runs per (root, connection, channel, symbol), split by whether the connection
-- was alive (the loader merges the runs of all connections of a key; keeping connections apart
-- shows where a key was subscribed again after a disconnect). Connection ids are unique only
-- within one archive root, so every grouping by conn_id is also by root.
-- A connection is alive in a minute when it delivered at least one frame (data or heartbeat)
-- in that minute. A row of liveness version 2 says where its subscribed stretch lies
-- (sub_from_ns .. sub_to_ns: the acknowledgement, the disconnect or stop, to the ns). A row of
-- version 1 (sub_from_ns null) only says how long; it is placed inside its minute: at the
-- minute's start when the same connection already had the key in the previous minute (the
-- subscription continues or ends here), at the minute's end when it still has it in the next
-- minute (it began here; receive times before that extend it, e.g. a resubscribe within
-- the minute), otherwise (began and ended within the minute) from the first receive time of
-- the key, else of its connection in that minute (rows of one connection and minute are
-- ordered by that time, which separates two runs that reused a connection id). A
-- piece anchored at the minute's start that cannot contain the last receive time belongs to a
-- later run that reused the connection id (ids
-- restart with each recorder run): it is placed to end at that time instead. Overlapping and
-- touching pieces of one connection are then merged (gaps-and-islands).
WITH conn_minute AS (
    SELECT root, conn_id, minute_ns, sum(frames) AS frames, min(first_ns) AS conn_first_ns
    FROM liveness
    WHERE minute_ns >= $lo - 60000000000 AND minute_ns < $hi
    GROUP BY ALL
),
rows AS (
    SELECT
        CASE WHEN l.stream = 'futures' AND l.channel IN ('book', 'futures_book') THEN 'futures_book'
             WHEN l.stream = 'futures' AND l.channel IN ('trade', 'futures_trade') THEN 'futures_trade'
             WHEN l.stream = 'futures' AND l.channel = 'ticker' THEN 'futures_ticker'
             ELSE l.channel END AS channel,
        l.symbol, l.root, l.conn_id, l.minute_ns, l.first_ns, l.last_ns,
        least(60000000000, l.subscribed_ns) AS sub_ns, l.sub_from_ns, l.sub_to_ns,
        c.frames > 0 AS alive, coalesce(l.first_ns, c.conn_first_ns) AS anchor_ns
    FROM liveness l JOIN conn_minute c USING (root, conn_id, minute_ns)
    WHERE l.channel NOT IN ('heartbeat', 'instrument') AND l.symbol <> ''
      AND l.subscribed_ns > 0
      AND l.minute_ns >= $lo - 60000000000 AND l.minute_ns < $hi
),
neighbours AS (
    SELECT *,
        lag(minute_ns) OVER w = minute_ns - 60000000000 AS has_prev,
        lead(minute_ns) OVER w = minute_ns + 60000000000 AS has_next
    FROM rows
    WINDOW w AS (PARTITION BY root, channel, symbol, conn_id ORDER BY minute_ns, anchor_ns)
),
placed AS (
    SELECT root, conn_id, channel, symbol, alive, minute_ns + 60000000000 AS minute_end,
        CASE WHEN sub_from_ns IS NOT NULL AND sub_to_ns IS NOT NULL THEN sub_from_ns
             WHEN coalesce(has_next, false) AND NOT coalesce(has_prev, false)
                 THEN least(minute_ns + 60000000000 - sub_ns, coalesce(first_ns, minute_ns + 60000000000))
             WHEN sub_ns >= 60000000000 OR coalesce(has_prev, false)
                 THEN CASE WHEN last_ns >= minute_ns + sub_ns
                           THEN least(first_ns, last_ns + 1 - sub_ns) ELSE minute_ns END
             ELSE least(coalesce(anchor_ns, minute_ns), minute_ns + 60000000000 - sub_ns)
        END AS start_ns,
        CASE WHEN sub_from_ns IS NOT NULL AND sub_to_ns IS NOT NULL THEN sub_to_ns
             WHEN coalesce(has_next, false) AND NOT coalesce(has_prev, false)
                 THEN minute_ns + 60000000000
             WHEN sub_ns >= 60000000000 OR coalesce(has_prev, false)
                 THEN CASE WHEN last_ns >= minute_ns + sub_ns THEN last_ns + 1
                           ELSE minute_ns + sub_ns END
             ELSE greatest(least(coalesce(anchor_ns, minute_ns), minute_ns + 60000000000 - sub_ns)
                           + sub_ns, coalesce(last_ns + 1, 0))
        END AS end_ns
    FROM neighbours
),
pieces AS (
    SELECT root, conn_id, channel, symbol, alive, start_ns, least(end_ns, minute_end) AS end_ns,
        CASE WHEN start_ns <= max(least(end_ns, minute_end)) OVER (
                 PARTITION BY root, conn_id, channel, symbol, alive ORDER BY start_ns, end_ns
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
             THEN 0 ELSE 1 END AS brk
    FROM placed
),
islands AS (
    SELECT *, sum(brk) OVER (PARTITION BY root, conn_id, channel, symbol, alive
                             ORDER BY start_ns, end_ns
                             ROWS UNBOUNDED PRECEDING) AS island
    FROM pieces
)
SELECT root, conn_id, channel, symbol, alive, min(start_ns) AS start_ns, max(end_ns) AS end_ns
FROM islands
GROUP BY root, conn_id, channel, symbol, alive, island
ORDER BY channel, symbol, root, start_ns, conn_id
