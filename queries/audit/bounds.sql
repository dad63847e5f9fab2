-- Default audit range: first to last receive time seen by liveness (half-open end); minute
-- bounds only when no receive time is known at all.
SELECT coalesce(min(first_ns), min(minute_ns)) AS lo,
       coalesce(max(last_ns) + 1, max(minute_ns) + 60000000000) AS hi
FROM liveness
