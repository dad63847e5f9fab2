-- Research macros. Times (`at_time`, `start_at`, `end_at`) accept a TIMESTAMP, a timestamp string
-- ('2025-01-01 00:00:01.5') or int ns since the Unix epoch (UTC).
--
-- Books are rebuilt exactly by the query layer's book engine, exposed to SQL as the scalar
-- functions kr_book(...) and kr_bbo(...) (registered by recorder.query before this file runs):
-- nearest checkpoint at or before the time within the same epoch, then the recorded events up
-- to it, checksum recomputed. A time inside a gap yields one row with valid = false and the
-- reason/gap instead of levels: never a silently wrong book.
-- clock: 'exchange' (Kraken's message timestamps; default) or 'receive' (our receive time).

-- Book at a time: one row per level (L2, channel 'book') or per order (L3, channel 'level3'),
-- best first per side. depth = top N price levels per side (NULL = the full recorded book).
-- L3 rows carry queue (1 = front of its level) and qty_ahead (same level, in front of it).
CREATE OR REPLACE MACRO book_at(sym, at_time, depth := NULL, channel := 'book', clock := 'exchange')
AS TABLE
SELECT unnest(kr_book(channel, sym, kr_ns(at_time), depth, clock), recursive := true);

-- Top of book after every recorded message in [start_at, end_at] (on the chosen clock),
-- with mid, spread and spread in basis points (mid/spread as DECIMAL, bps as DOUBLE).
CREATE OR REPLACE MACRO bbo_series(sym, start_at, end_at, channel := 'book', clock := 'exchange')
AS TABLE
SELECT b.*, kr_time(b.recv_ns) AS recv_time, kr_time(b.ts_ns) AS exchange_time,
       (b.bid + b.ask) * 0.5 AS mid, b.ask - b.bid AS spread,
       CAST(b.ask - b.bid AS DOUBLE) / CAST((b.bid + b.ask) * 0.5 AS DOUBLE) * 1e4 AS spread_bps
FROM (SELECT unnest(kr_bbo(channel, sym, kr_ns(start_at), kr_ns(end_at), clock),
                    recursive := true)) b;

-- Mid/spread sampled on a regular grid: the last top of book at or before each grid point
-- (ASOF join). `every` is an INTERVAL such as INTERVAL 1 SECOND.
CREATE OR REPLACE MACRO mid_spread(sym, start_at, end_at, every := INTERVAL 1 MINUTE,
                                   channel := 'book', clock := 'exchange')
AS TABLE
WITH s AS (SELECT * FROM bbo_series(sym, start_at, end_at, channel := channel, clock := clock)),
     grid AS (SELECT unnest(generate_series(kr_time(kr_ns(start_at)), kr_time(kr_ns(end_at)),
                                            every)) AS t)
SELECT grid.t AS time, s.bid, s.ask, s.mid, s.spread, s.spread_bps, s.epoch,
       s.recv_ns AS book_recv_ns
FROM grid ASOF LEFT JOIN s
  ON grid.t >= (CASE WHEN clock = 'receive' THEN s.recv_time ELSE s.exchange_time END)
ORDER BY grid.t;

-- Every trade of `sym` in [start_at, end_at] (receive time) with the book just before it:
-- the last top of book *received before* the trade frame (book and trade arrive on the same
-- spot connection, so receive order is Kraken's send order). Adds the trade's side relative
-- to the touch and its distance from mid in bps.
CREATE OR REPLACE MACRO trades_with_book(sym, start_at, end_at, channel := 'book') AS TABLE
WITH b AS (SELECT * FROM bbo_series(sym, start_at, end_at, channel := channel,
                                    clock := 'receive')),
     t AS (SELECT * FROM trades
           WHERE symbol = sym AND recv_ns BETWEEN kr_ns(start_at) AND kr_ns(end_at))
SELECT t.*, b.bid AS pre_bid, b.ask AS pre_ask, b.mid AS pre_mid, b.spread AS pre_spread,
       b.recv_ns AS book_recv_ns, b.epoch AS book_epoch,
       (CAST(t.price AS DOUBLE) / CAST(b.mid AS DOUBLE) - 1) * 1e4 AS bps_from_mid
FROM t ASOF LEFT JOIN b ON t.recv_ns > b.recv_ns
ORDER BY t.recv_ns, t.trade_id;

-- Trades deduplicated by (symbol, trade_id): the WS snapshot, live feed and REST backfill can
-- overlap. Trades without a trade id (some REST pages) are kept as they are.
CREATE OR REPLACE VIEW trades_unique AS
SELECT * FROM trades
WHERE trade_id IS NULL
UNION ALL
SELECT * FROM trades
WHERE trade_id IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY symbol, trade_id ORDER BY source_code DESC,
                           recv_ns) = 1;

-- OHLCV candles at any interval resampled from trades (exchange time buckets by default).
-- sym = NULL for every symbol. open/close by trade time then trade id; volume exact DECIMAL;
-- notional and vwap as DOUBLE.
CREATE OR REPLACE MACRO ohlc_from_trades(every := INTERVAL 1 MINUTE, sym := NULL,
                                         start_at := NULL, end_at := NULL,
                                         clock := 'exchange')
AS TABLE
WITH t AS (
    SELECT symbol, price, qty, side, trade_id, ts_ns, recv_ns,
           CASE WHEN clock = 'receive' THEN recv_ns ELSE ts_ns END AS t_ns
    FROM trades_unique
    WHERE (sym IS NULL OR symbol = sym)
      AND (start_at IS NULL OR (CASE WHEN clock = 'receive' THEN recv_ns ELSE ts_ns END)
                               >= kr_ns(start_at))
      AND (end_at IS NULL OR (CASE WHEN clock = 'receive' THEN recv_ns ELSE ts_ns END)
                             < kr_ns(end_at))
), b AS (
    SELECT *, t_ns - t_ns % (epoch_us(INTERVAL 0 SECOND + every) * 1000) AS bucket_ns FROM t
)
SELECT symbol, kr_time(bucket_ns) AS bucket, bucket_ns,
       arg_min(price, (t_ns, coalesce(trade_id, 0))) AS open, max(price) AS high,
       min(price) AS low, arg_max(price, (t_ns, coalesce(trade_id, 0))) AS close,
       sum(qty) AS volume,
       sum(qty) FILTER (WHERE side = 'buy') AS buy_volume,
       sum(qty) FILTER (WHERE side = 'sell') AS sell_volume,
       sum(CAST(price AS DOUBLE) * CAST(qty AS DOUBLE)) AS notional,
       sum(CAST(price AS DOUBLE) * CAST(qty AS DOUBLE)) / CAST(sum(qty) AS DOUBLE) AS vwap,
       count(*) AS trades
FROM b
GROUP BY symbol, bucket_ns
ORDER BY symbol, bucket_ns;

-- Futures funding: every ticker row of `product` with a funding rate.
CREATE OR REPLACE MACRO funding_series(product) AS TABLE
SELECT recv_time, exchange_time, product_id, funding_rate, funding_rate_prediction,
       next_funding_rate_time, mark_price, index, open_interest
FROM futures_ticker
WHERE product_id = upper(product) AND funding_rate IS NOT NULL
ORDER BY recv_ns;

-- Basis of a perpetual/future against spot: each futures ticker row joined (ASOF, receive
-- time) with the latest spot ticker of `spot_sym`. basis = mark - spot mid.
CREATE OR REPLACE MACRO basis_series(spot_sym, product) AS TABLE
WITH f AS (SELECT * FROM futures_ticker WHERE product_id = upper(product)),
     s AS (SELECT recv_ns, bid, ask, (bid + ask) * 0.5 AS mid FROM ticker WHERE symbol = spot_sym)
SELECT f.recv_time, f.exchange_time, f.product_id, f.mark_price, f.index, f.funding_rate,
       s.mid AS spot_mid, s.recv_ns AS spot_recv_ns,
       f.mark_price - s.mid AS basis,
       (CAST(f.mark_price AS DOUBLE) / CAST(s.mid AS DOUBLE) - 1) * 1e4 AS basis_bps,
       (CAST(f.index AS DOUBLE) / CAST(s.mid AS DOUBLE) - 1) * 1e4 AS index_vs_spot_bps
FROM f ASOF LEFT JOIN s ON f.recv_ns >= s.recv_ns
ORDER BY f.recv_ns;

-- Order lifetimes from level3 events of `sym`: one row per order id. `placed_ns` is the first
-- add's exchange time (or the snapshot time when the order was already resting: left-censored,
-- `in_snapshot`); `ended_ns` the delete's exchange time (NULL: still resting at the end of
-- the data or it left the subscribed depth window for good: right-censored). Kraken re-sends
-- orders returning into the window as add with their original timestamp; they count as one
-- order (readds).
CREATE OR REPLACE MACRO order_lifetimes(sym) AS TABLE
SELECT symbol, order_id, any_value(side) AS side,
       bool_or(event = 'snapshot') AS in_snapshot,
       min(ts_ns) FILTER (WHERE event IN ('add', 'snapshot')) AS placed_ns,
       max(ts_ns) FILTER (WHERE event = 'delete') AS ended_ns,
       kr_time(min(ts_ns) FILTER (WHERE event IN ('add', 'snapshot'))) AS placed_time,
       kr_time(max(ts_ns) FILTER (WHERE event = 'delete')) AS ended_time,
       (max(ts_ns) FILTER (WHERE event = 'delete')
        - min(ts_ns) FILTER (WHERE event IN ('add', 'snapshot'))) / 1e9 AS lifetime_s,
       arg_min(price, recv_ns) AS first_price, arg_max(price, recv_ns) AS last_price,
       arg_min(qty, recv_ns) AS first_qty,
       count(*) FILTER (WHERE event = 'modify') AS modifies,
       greatest(count(*) FILTER (WHERE event = 'add') - 1, 0) AS readds,
       min(recv_ns) AS first_recv_ns, max(recv_ns) AS last_recv_ns
FROM level3
WHERE symbol = sym
GROUP BY symbol, order_id;

-- Queue position of one order at a time (from the exact L3 book): its level, place in the
-- level's queue (1 = front) and the quantity ahead of it. No row: not resting at that time.
CREATE OR REPLACE MACRO queue_position(sym, oid, at_time, clock := 'exchange') AS TABLE
SELECT * FROM book_at(sym, at_time, channel := 'level3', clock := clock)
WHERE order_id = oid OR NOT valid;
