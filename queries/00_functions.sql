-- Scalar helpers used by every view. Loaded first (files run in name order).
-- Exactness: prices and quantities are int64 *units* with a per-row scale
-- (value = units x 10^-scale, scale 0..18). DECIMAL(38,18) holds every such value exactly:
-- units (<= 19 digits) as DECIMAL(19,0) times 10^-scale as DECIMAL(19,18) gives DECIMAL(38,18)
-- with no rounding (decimal division in DuckDB would go through DOUBLE, so we never divide).

CREATE OR REPLACE MACRO kr_pow10_neg(scale) AS
    (['1', '0.1', '0.01', '0.001', '0.0001', '0.00001', '0.000001', '0.0000001',
      '0.00000001', '0.000000001', '0.0000000001', '0.00000000001', '0.000000000001',
      '0.0000000000001', '0.00000000000001', '0.000000000000001', '0.0000000000000001',
      '0.00000000000000001', '0.000000000000000001']::DECIMAL(19,18)[])[scale + 1];

-- units + scale -> exact DECIMAL(38,18); NULL units stay NULL.
CREATE OR REPLACE MACRO kr_dec(units, scale) AS
    CAST(units AS DECIMAL(19,0)) * kr_pow10_neg(scale);

-- Same, falling back to the exact text kept in the row's `overflow` JSON for values that
-- did not fit int64 units (DECIMAL(38,18) holds up to 20 integer digits; beyond that NULL).
CREATE OR REPLACE MACRO kr_dec_or_overflow(units, scale, overflow, field) AS
    coalesce(kr_dec(units, scale),
             TRY_CAST(json_extract_string(overflow, '$.' || field) AS DECIMAL(38,18)));

-- Exact decimal JSON text (ticker, OHLC, funding) -> DECIMAL(38,18) (NULL if it does not fit).
CREATE OR REPLACE MACRO kr_text_dec(txt) AS TRY_CAST(txt AS DECIMAL(38,18));

-- int ns since the Unix epoch (UTC) -> TIMESTAMP_NS (naive, UTC).
CREATE OR REPLACE MACRO kr_time(ns) AS make_timestamp_ns(ns);

-- A TIMESTAMP (any precision) or int ns -> int ns. Strings are cast to TIMESTAMP_NS first.
CREATE OR REPLACE MACRO kr_ns(t) AS
    CASE WHEN TRY_CAST(t AS BIGINT) IS NOT NULL THEN TRY_CAST(t AS BIGINT)
         ELSE epoch_ns(CAST(t AS TIMESTAMP_NS)) END;

-- Label decoders of coded columns (`kr_<dataset>_<column>(code)`, e.g. kr_trades_side) are
-- generated from the `labels` of schemas/*.toml before this file runs
-- (recorder.archive.schema.DatasetSchema.label_macros_sql).
