-- Readable views over every archive dataset.
--
-- The raw Parquet of dataset X is registered by the loader as `raw_X` (exactly the columns of
-- schemas/X.toml; an empty relation with that schema when the archive has no file yet).
-- Conventions, driven by schemas/X.toml (tests/test_schema_views.py fails on any drift):
--   * every schema column is kept under its own name, except coded ints (`labels`) and int
--     units (`decimal = "units"`), which move to `<name>_code` / `<name>_units` while `<name>`
--     becomes readable: the label via the generated decoder kr_<dataset>_<column>(code), the
--     exact DECIMAL(38,18) from units + scale (or the overflow text);
--   * `decimal = "text"` columns are exact DECIMAL(38,18) (kr_text_dec);
--   * every int ns time column `x_ns` gets a TIMESTAMP_NS `x_time` beside it (UTC, naive);
--     `recv_ns` -> `recv_time` (our receive clock), `ts_ns` -> `exchange_time` (Kraken's);
--   * any other column a view derives is listed in the schema's `view_adds`.

CREATE OR REPLACE VIEW level3 AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       symbol, epoch, conn_id,
       kr_level3_event(event) AS event, event AS event_code,
       kr_level3_side(side) AS side, side AS side_code, order_id,
       kr_dec_or_overflow(price, price_scale, overflow, 'price') AS price,
       kr_dec_or_overflow(qty, qty_scale, overflow, 'qty') AS qty,
       price AS price_units, qty AS qty_units, price_scale, qty_scale, checksum, overflow
FROM raw_level3;

CREATE OR REPLACE VIEW book AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       symbol, epoch, conn_id,
       kr_book_event(event) AS event, event AS event_code,
       kr_book_side(side) AS side, side AS side_code,
       kr_dec_or_overflow(price, price_scale, overflow, 'price') AS price,
       kr_dec_or_overflow(qty, qty_scale, overflow, 'qty') AS qty,
       qty = 0 AS removed,
       price AS price_units, qty AS qty_units, price_scale, qty_scale, checksum, overflow
FROM raw_book;

CREATE OR REPLACE VIEW trades AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       symbol, epoch, conn_id, kr_trades_source(source) AS source, source AS source_code,
       trade_id,
       kr_trades_side(side) AS side, side AS side_code, ord_type,
       kr_dec_or_overflow(price, price_scale, overflow, 'price') AS price,
       kr_dec_or_overflow(qty, qty_scale, overflow, 'qty') AS qty,
       price AS price_units, qty AS qty_units, price_scale, qty_scale, overflow
FROM raw_trades;

CREATE OR REPLACE VIEW ohlc AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       symbol, conn_id, kr_ohlc_source(source) AS source, source AS source_code, "interval",
       interval_begin_ns, kr_time(interval_begin_ns) AS interval_begin_time,
       kr_text_dec(open) AS open, kr_text_dec(high) AS high, kr_text_dec(low) AS low,
       kr_text_dec(close) AS close, kr_text_dec(vwap) AS vwap, kr_text_dec(volume) AS volume,
       trades
FROM raw_ohlc;

CREATE OR REPLACE VIEW ticker AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       symbol, conn_id,
       kr_text_dec(bid) AS bid, kr_text_dec(bid_qty) AS bid_qty, kr_text_dec(ask) AS ask,
       kr_text_dec(ask_qty) AS ask_qty, kr_text_dec(last) AS last,
       kr_text_dec(volume) AS volume, kr_text_dec(vwap) AS vwap, kr_text_dec(low) AS low,
       kr_text_dec(high) AS high, kr_text_dec(change) AS change,
       kr_text_dec(change_pct) AS change_pct
FROM raw_ticker;

CREATE OR REPLACE VIEW instruments AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, symbol, kind, change, status, base, quote,
       price_precision, qty_precision, cost_precision,
       kr_text_dec(price_increment) AS price_increment,
       kr_text_dec(qty_increment) AS qty_increment, kr_text_dec(qty_min) AS qty_min, attributes,
       lead(recv_ns) OVER (PARTITION BY symbol ORDER BY recv_ns) AS valid_until_ns
FROM raw_instruments;

CREATE OR REPLACE VIEW checkpoints AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, channel, symbol, epoch, epoch_message, reason,
       depth, price_precision, qty_precision, checksum, entries, book
FROM raw_checkpoints;

-- One row per epoch: a still-open epoch may have several rows; the one with the greatest
-- end_ns wins (see schemas/epochs.toml).
CREATE OR REPLACE VIEW epochs AS
SELECT epoch, stream, channel, symbol, conn_id, depth, price_precision, qty_precision,
       precision_source, start_ns, kr_time(start_ns) AS start_time, end_ns,
       kr_time(end_ns) AS end_time, (end_ns - start_ns) / 1e9 AS duration_s, start_reason,
       end_reason, messages, rows, checksum_ok, checksum_failed
FROM raw_epochs
QUALIFY row_number() OVER (PARTITION BY channel, symbol, epoch
                           ORDER BY end_ns DESC, messages DESC) = 1;

CREATE OR REPLACE VIEW gaps AS
SELECT start_ns, kr_time(start_ns) AS start_time, end_ns, kr_time(end_ns) AS end_time,
       (end_ns - start_ns) / 1e9 AS duration_s, end_ns IS NULL AS open,
       stream, channel, symbol, conn_id, cause, missing, missing_count, healed_by, detail
FROM raw_gaps;

CREATE OR REPLACE VIEW liveness AS
SELECT minute_ns, kr_time(minute_ns) AS minute_time, conn_id, stream, channel, symbol,
       subscribed_ns, subscribed_ns / 60e9 AS subscribed_fraction, frames,
       first_ns, kr_time(first_ns) AS first_time, last_ns, kr_time(last_ns) AS last_time,
       subscribed_ns > 0 AND frames = 0 AS quiet, sub_from_ns, kr_time(sub_from_ns) AS sub_from_time,
       sub_to_ns, kr_time(sub_to_ns) AS sub_to_time
FROM raw_liveness;

CREATE OR REPLACE VIEW rejects AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, conn_id, stream, direction, stage, reason,
       detail, symbol, raw
FROM raw_rejects;

CREATE OR REPLACE VIEW rest_snapshots AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, request, symbol,
       kr_rest_snapshots_side(side) AS side, side AS side_code, position,
       kr_text_dec(price) AS price, kr_text_dec(qty) AS qty,
       ts_ns, kr_time(ts_ns) AS exchange_time, order_id
FROM raw_rest_snapshots;

CREATE OR REPLACE VIEW futures_book AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       product_id, epoch, conn_id,
       kr_futures_book_event(event) AS event, event AS event_code,
       seq, kr_futures_book_side(side) AS side, side AS side_code,
       kr_dec_or_overflow(price, price_scale, overflow, 'price') AS price,
       kr_dec_or_overflow(qty, qty_scale, overflow, 'qty') AS qty,
       price AS price_units, qty AS qty_units, price_scale, qty_scale, overflow
FROM raw_futures_book;

CREATE OR REPLACE VIEW futures_trades AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       product_id, conn_id, kr_futures_trades_source(source) AS source,
       source AS source_code, seq, uid,
       kr_futures_trades_side(side) AS side, side AS side_code, type,
       kr_dec_or_overflow(price, price_scale, overflow, 'price') AS price,
       kr_dec_or_overflow(qty, qty_scale, overflow, 'qty') AS qty,
       price AS price_units, qty AS qty_units, price_scale, qty_scale, overflow
FROM raw_futures_trades;

CREATE OR REPLACE VIEW futures_ticker AS
SELECT recv_ns, kr_time(recv_ns) AS recv_time, ts_ns, kr_time(ts_ns) AS exchange_time,
       product_id, conn_id,
       kr_text_dec(bid) AS bid, kr_text_dec(ask) AS ask, kr_text_dec(last) AS last,
       kr_text_dec(mark_price) AS mark_price, kr_text_dec(index) AS index,
       kr_text_dec(funding_rate) AS funding_rate,
       kr_text_dec(funding_rate_prediction) AS funding_rate_prediction,
       kr_text_dec(open_interest) AS open_interest, kr_text_dec(volume) AS volume,
       next_funding_rate_time_ns, kr_time(next_funding_rate_time_ns) AS next_funding_rate_time
FROM raw_futures_ticker;
