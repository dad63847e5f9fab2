-- Default audit range: from the first to the last proof of listening in liveness (an
-- acknowledged subscription's start, a receive time, a subscription's end at a disconnect or
-- stop; half-open end); minute bounds only when no such time is known at all.
SELECT coalesce(min(least(sub_from_ns, first_ns)), min(minute_ns)) AS lo,
       coalesce(max(greatest(sub_to_ns, last_ns + 1)), max(minute_ns) + 60000000000) AS hi
FROM liveness
