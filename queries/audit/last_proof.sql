-- The last proof of listening on a connection at or before a time: for each wanted
-- (root, conn_id, t_ns) (a table the loader registers), the latest receive time (data or
-- heartbeat) or subscription start on that connection, read row by row (a connection id reused
-- by a later recorder run in the same minute has its own rows, all after t_ns), looking back
-- at most 10 minutes.
SELECT w.root, w.conn_id, w.t_ns,
    max(greatest(CASE WHEN l.last_ns <= w.t_ns THEN l.last_ns END,
                 CASE WHEN l.first_ns <= w.t_ns THEN l.first_ns END,
                 CASE WHEN l.sub_from_ns <= w.t_ns THEN l.sub_from_ns END)) AS proof_ns
FROM wanted w
JOIN liveness l ON l.root = w.root AND l.conn_id = w.conn_id
    AND l.minute_ns <= w.t_ns AND l.minute_ns > w.t_ns - 600000000000
GROUP BY ALL
