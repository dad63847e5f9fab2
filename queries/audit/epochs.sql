-- One row per epoch (the row with the greatest end_ns supersedes earlier 'open' rows). Epochs
-- up to a day past $hi are read: an unhealed gap ends at its key's next epoch. Epoch ids are
-- unique across archive roots; `root` names the root that wrote the epoch.
SELECT channel, symbol, epoch, arg_max(root, end_ns) AS root,
    arg_max(conn_id, end_ns) AS conn_id, arg_max(stream, end_ns) AS stream,
    min(start_ns) AS start_ns, max(end_ns) AS end_ns,
    arg_max(start_reason, end_ns) AS start_reason, arg_max(end_reason, end_ns) AS end_reason,
    max(messages) AS messages, max(checksum_ok) AS checksum_ok,
    max(checksum_failed) AS checksum_failed
FROM epochs
WHERE start_ns < $hi + 86400000000000 AND end_ns >= $lo - 86400000000000
GROUP BY channel, symbol, epoch
ORDER BY channel, symbol, epoch
