//! Kraken Futures WebSocket v1 frames and full-depth books, decoded without a float.
//!
//! [`FuturesBooks::feed`] takes a batch of received text frames and returns one verdict per
//! frame, deciding what the Python pipeline (`recorder/pipeline/core.py`, with the decoder
//! `recorder/protocol/futures.py` and the book `recorder/book/futures.py` as the reference)
//! decides for the same frame:
//!
//! * [`OK`]: a `book_snapshot` or `book` delta applied in sequence;
//! * [`GAP`]: a delta whose `seq` jumped: it is applied (quantities are absolute), then the
//!   product's book is dropped until the next snapshot, as the pipeline ends the epoch;
//! * [`REJECT`] with a reason code ([`REASONS`]): the decoder's `too_large`, `bad_encoding`,
//!   `malformed_json`, `unknown_message`, `schema`, `bad_number`, `bad_timestamp`; the
//!   pipeline's `bad_symbol` (a product id outside the futures grammar), `apply_error` (a
//!   negative quantity; the book is dropped), `update_before_snapshot`, `seq_duplicate` and
//!   `seq_regression` (not applied);
//! * [`SKIPPED`]: any other valid frame (trades, tickers, heartbeats, control events).
//!
//! The `crossed` column says whether the product's book is crossed after the frame (best bid
//! at or above best ask); the pipeline keeps such books, so it is reported, not a reject.
//!
//! Numbers stay exact: a price or quantity is the JSON token's text (a JSON string's content),
//! validated as the Python decoder does (the JSON number grammar, at most 64 characters, an
//! integer below 10^38, an exponent the recorder can render), and levels are ordered by an
//! exact decimal key ([`NumKey`]) built from the digits, so `34892`, `34892.0` and `3.4892e4`
//! are one level. Deltas also report price and quantity as integer units and scale (the
//! crate's [`crate::spot::token_decimal`]) when they fit an `i64`. No input panics.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::decimal::Decimal;
use crate::spot;

/// Reject reason codes (index into [`REASONS`]); 0 means "no reject".
pub const TOO_LARGE: u8 = 1;
pub const BAD_ENCODING: u8 = 2;
pub const MALFORMED_JSON: u8 = 3;
pub const UNKNOWN_MESSAGE: u8 = 4;
pub const SCHEMA: u8 = 5;
pub const BAD_NUMBER: u8 = 6;
pub const BAD_TIMESTAMP: u8 = 7;
pub const APPLY_ERROR: u8 = 8;
pub const UPDATE_BEFORE_SNAPSHOT: u8 = 9;
pub const SEQ_DUPLICATE: u8 = 10;
pub const SEQ_REGRESSION: u8 = 11;
pub const BAD_SYMBOL: u8 = 12;

/// Reason names, as the Python pipeline writes them to the `rejects` table.
pub const REASONS: [&str; 13] = [
    "",
    "too_large",
    "bad_encoding",
    "malformed_json",
    "unknown_message",
    "schema",
    "bad_number",
    "bad_timestamp",
    "apply_error",
    "update_before_snapshot",
    "seq_duplicate",
    "seq_regression",
    "bad_symbol",
];

/// Verdict codes (index into [`VERDICTS`]).
pub const OK: u8 = 0;
pub const GAP: u8 = 1;
pub const REJECT: u8 = 2;
pub const SKIPPED: u8 = 3;
/// Verdict names.
pub const VERDICTS: [&str; 4] = ["ok", "seq_gap", "reject", "skipped"];

/// Frame kinds: a book snapshot, a book delta, anything else.
pub const SNAPSHOT: u8 = 0;
pub const DELTA: u8 = 1;
pub const NO_KIND: u8 = 2;

/// `product` of a frame without one; `seq`/`expected`/`ts_ns`/units when absent.
pub const NO_PRODUCT: u32 = u32::MAX;
pub const NONE_I64: i64 = i64::MIN;

/// The Python decoder's default frame limit.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

const MAX_TOKEN_CHARS: usize = 64;
const MAX_INT_DIGITS: usize = 38;
const MAX_MS: i128 = (i64::MAX / 1_000_000) as i128;
const MAX_SYMBOL_LENGTH: usize = 32;

const EVENTS: [&str; 10] = [
    "info",
    "subscribe",
    "unsubscribe",
    "subscribed",
    "unsubscribed",
    "subscribed_failed",
    "unsubscribed_failed",
    "error",
    "alert",
    "challenge",
];
const FEEDS: [&str; 7] = [
    "book_snapshot",
    "book",
    "trade_snapshot",
    "trade",
    "ticker",
    "ticker_lite",
    "heartbeat",
];

// ------------------------------------------------------------------------------------------
// Exact numbers.

/// Exact, totally ordered decimal value of a number token, of any length the decoder admits.
///
/// The significant digits (leading and trailing zeros dropped) are packed left-aligned into
/// two 38-digit integers, with `adjusted` the power of ten of the first digit: comparing
/// `(adjusted, hi, lo)` compares magnitudes. Zero has `sign == 0` (so `-0` equals `0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NumKey {
    sign: i8,
    adjusted: i32,
    hi: u128,
    lo: u128,
}

impl NumKey {
    const ZERO: NumKey = NumKey {
        sign: 0,
        adjusted: 0,
        hi: 0,
        lo: 0,
    };

    /// True for a value below zero.
    pub fn is_negative(&self) -> bool {
        self.sign < 0
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.sign == 0
    }
}

impl Ord for NumKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match self.sign.cmp(&other.sign) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let magnitude =
            (self.adjusted, self.hi, self.lo).cmp(&(other.adjusted, other.hi, other.lo));
        if self.sign < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for NumKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `10^i` for `i <= 38` (the largest power of ten below `u128::MAX`).
const POW10_U128: [u128; 39] = {
    let mut table = [1u128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// The value of `text` if it is a number token the Python decoder admits as text (a JSON
/// string's content or a JSON float's text): the JSON number grammar, at most 64 characters,
/// and an exponent form only if its decimal exponent is within `-56..=38` (what
/// `token_to_text` renders). None otherwise.
pub fn text_token_key(text: &str) -> Option<NumKey> {
    if text.len() > MAX_TOKEN_CHARS {
        return None;
    }
    let (key, _) = parse_json_number(text.as_bytes())?;
    Some(key)
}

/// The value of a JSON integer token as Python's `int` holds it, if within `±(10^38 - 1)`.
fn int_token_key(text: &str) -> Option<NumKey> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.len() > MAX_INT_DIGITS {
        return None;
    }
    parse_json_number(text.as_bytes()).map(|(k, _)| k)
}

/// Parse the JSON number grammar `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?` into its
/// exact key; the flag says whether it had an exponent. Exponent forms whose decimal exponent
/// (exponent minus decimals) is outside `-56..=38` are refused, as `token_to_text` does.
fn parse_json_number(t: &[u8]) -> Option<(NumKey, bool)> {
    let mut i = 0;
    let negative = t.first() == Some(&b'-');
    if negative {
        i = 1;
    }
    let int_start = i;
    while i < t.len() && t[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &t[int_start..i];
    if int_digits.is_empty() || (int_digits.len() > 1 && int_digits[0] == b'0') {
        return None;
    }
    let mut frac_digits: &[u8] = &[];
    if i < t.len() && t[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < t.len() && t[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &t[start..i];
        if frac_digits.is_empty() {
            return None;
        }
    }
    let mut exponent: i64 = 0;
    let mut has_exponent = false;
    if i < t.len() && (t[i] == b'e' || t[i] == b'E') {
        has_exponent = true;
        i += 1;
        let mut exp_negative = false;
        if i < t.len() && (t[i] == b'+' || t[i] == b'-') {
            exp_negative = t[i] == b'-';
            i += 1;
        }
        let start = i;
        while i < t.len() && t[i].is_ascii_digit() {
            exponent = exponent
                .saturating_mul(10)
                .saturating_add(i64::from(t[i] - b'0'));
            i += 1;
        }
        if start == i {
            return None;
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != t.len() {
        return None;
    }
    let frac_len = i64::try_from(frac_digits.len()).ok()?;
    if has_exponent {
        let decimal_exponent = exponent.saturating_sub(frac_len);
        if !(-56..=38).contains(&decimal_exponent) {
            return None;
        }
    }
    // significant digits (integer then fraction digits, leading and trailing zeros dropped)
    // packed in one pass: zeros after the first significant digit wait in `pending` until a
    // non-zero digit follows them
    let (mut hi, mut lo, mut n, mut pending, mut leading) = (0u128, 0u128, 0usize, 0usize, 0usize);
    for &c in int_digits.iter().chain(frac_digits) {
        if c == b'0' {
            if n == 0 {
                leading += 1;
            } else {
                pending += 1;
            }
            continue;
        }
        if n + pending >= 76 {
            return None;
        }
        for d in std::iter::repeat_n(0u128, pending).chain(std::iter::once(u128::from(c - b'0'))) {
            if n < 38 {
                hi = hi * 10 + d;
            } else {
                lo = lo * 10 + d;
            }
            n += 1;
        }
        pending = 0;
    }
    if n == 0 {
        return Some((NumKey::ZERO, has_exponent));
    }
    // the first significant digit's power of ten: (int digits - 1 - leading) + exponent
    let first_power = i64::try_from(int_digits.len()).ok()? - 1 - i64::try_from(leading).ok()?;
    let adjusted = i32::try_from(first_power.saturating_add(exponent)).ok()?;
    if n < 38 {
        hi *= POW10_U128[38 - n];
    } else {
        lo *= POW10_U128[76 - n];
    }
    let sign = if negative { -1 } else { 1 };
    Some((
        NumKey {
            sign,
            adjusted,
            hi,
            lo,
        },
        has_exponent,
    ))
}

/// A number token as the decoder keeps it: its exact text (what Python's `str()` of the
/// token shows) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    pub text: Cow<'a, str>,
    /// None only for a delta's JSON float with an exponent the recorder cannot render, which
    /// the Python decoder's hot path admits and its book then refuses (`apply_error`).
    pub key: Option<NumKey>,
}

/// Classify a JSON value holding a number (`Any` in the Python schema): a JSON integer (kept
/// as Python's `int`), a JSON float (its text) or a JSON string spelling a number (its
/// content). None for anything else (null, bool, array, object, other text).
fn number_token(raw: &RawValue) -> Option<Token<'_>> {
    number_token_as(raw, false)
}

/// [`number_token`]; `hot` admits a JSON float of at most 64 characters whatever its
/// exponent, as the Python decoder's book-delta hot path does (its key is then None).
fn number_token_as(raw: &RawValue, hot: bool) -> Option<Token<'_>> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => {
            let content = string_value(raw)?;
            let key = text_token_key(&content)?;
            Some(Token {
                text: content,
                key: Some(key),
            })
        }
        b'-' | b'0'..=b'9' => {
            if text.bytes().any(|c| matches!(c, b'.' | b'e' | b'E')) {
                let key = text_token_key(text);
                if key.is_none() && !(hot && text.len() <= MAX_TOKEN_CHARS) {
                    return None;
                }
                Some(Token {
                    text: Cow::Borrowed(text),
                    key,
                })
            } else {
                let key = int_token_key(text)?;
                // Python's int drops the sign of -0
                let text = if key.is_zero() { "0" } else { text };
                Some(Token {
                    text: Cow::Borrowed(text),
                    key: Some(key),
                })
            }
        }
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------
// JSON access.

/// An object key, borrowed from the frame unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A JSON object as its keys and raw values, in order (a repeated key: the last one counts).
struct Object<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut entries = Vec::with_capacity(8);
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Object(entries))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl<'a> Object<'a> {
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.0 == name)
            .map(|(_, v)| *v)
    }

    /// A present, non-null value.
    fn given(&self, name: &str) -> Option<&'a RawValue> {
        self.get(name).filter(|v| v.get() != "null")
    }
}

/// A JSON string value's text (unescaped), else None.
fn string_value(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if !text.starts_with('"') {
        return None;
    }
    if text.len() >= 2 && !text.contains('\\') {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

fn short(text: &str) -> String {
    crate::error::clip(text, 64).to_owned()
}

/// A JSON integer's value (saturated beyond i128), None for any other JSON value.
fn json_int(raw: &RawValue) -> Option<i128> {
    let text = raw.get();
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if digits.len() <= 18 {
        let magnitude = digits
            .bytes()
            .fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0'));
        let magnitude = i128::from(magnitude);
        return Some(if text.starts_with('-') {
            -magnitude
        } else {
            magnitude
        });
    }
    let magnitude = digits.bytes().fold(0i128, |acc, c| {
        acc.saturating_mul(10).saturating_add(i128::from(c - b'0'))
    });
    Some(if text.starts_with('-') {
        -magnitude
    } else {
        magnitude
    })
}

// ------------------------------------------------------------------------------------------
// Decoding.

/// Why a frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: u8,
    pub detail: String,
}

impl Reject {
    fn new(reason: u8, detail: impl Into<String>) -> Self {
        let mut detail: String = detail.into();
        let kept = crate::error::clip(&detail, 200).len();
        detail.truncate(kept);
        Reject { reason, detail }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = REASONS
            .get(usize::from(self.reason))
            .copied()
            .unwrap_or("?");
        write!(f, "{name}: {}", self.detail)
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `book_snapshot`: every level of one product.
    Snapshot {
        product: Cow<'a, str>,
        seq: i64,
        timestamp_ms: i64,
        bids: Vec<(Token<'a>, Token<'a>)>,
        asks: Vec<(Token<'a>, Token<'a>)>,
    },
    /// `book`: one level set to an absolute quantity.
    Delta {
        product: Cow<'a, str>,
        sell: bool,
        seq: i64,
        price: Token<'a>,
        qty: Token<'a>,
        timestamp_ms: i64,
    },
    /// Any other valid frame; `products` are the product ids the pipeline checks (trade,
    /// ticker, the acks' `product_ids`).
    Other { products: Vec<Cow<'a, str>> },
}

/// The checks that follow a schema-valid data message, in the Python decoder's order.
#[derive(Default)]
struct Checks<'a> {
    numbers: Vec<(&'static str, Option<&'a RawValue>)>,
    optional: Vec<(&'static str, Option<&'a RawValue>)>,
    millis: Vec<(&'static str, Option<i128>)>,
}

impl Checks<'_> {
    fn run(&self) -> Result<(), Reject> {
        for (name, value) in &self.numbers {
            if value.and_then(number_token).is_none() {
                let shown = value.map_or("None", |v| v.get());
                return Err(Reject::new(
                    BAD_NUMBER,
                    format!("{name} is not a number: {}", short(shown)),
                ));
            }
        }
        for (name, value) in &self.optional {
            if let Some(v) = value.filter(|v| v.get() != "null")
                && number_token(v).is_none()
            {
                return Err(Reject::new(
                    BAD_NUMBER,
                    format!("{name} is not a number: {}", short(v.get())),
                ));
            }
        }
        for (name, value) in &self.millis {
            if let Some(ms) = value
                && !(0..=MAX_MS).contains(ms)
            {
                return Err(Reject::new(
                    BAD_TIMESTAMP,
                    format!("{name} out of range: {ms}"),
                ));
            }
        }
        Ok(())
    }
}

fn schema(what: &str, detail: impl fmt::Display) -> Reject {
    Reject::new(SCHEMA, format!("{what}: {detail}"))
}

fn required<'a>(obj: &Object<'a>, what: &str, name: &str) -> Result<&'a RawValue, Reject> {
    obj.get(name)
        .ok_or_else(|| schema(what, format!("Object missing required field `{name}`")))
}

fn req_str<'a>(obj: &Object<'a>, what: &str, name: &str) -> Result<Cow<'a, str>, Reject> {
    string_value(required(obj, what, name)?)
        .ok_or_else(|| schema(what, format!("Expected `str` at `$.{name}`")))
}

fn opt_str(obj: &Object<'_>, what: &str, name: &str) -> Result<(), Reject> {
    match obj.given(name) {
        Some(v) if string_value(v).is_none() => {
            Err(schema(what, format!("Expected `str | null` at `$.{name}`")))
        }
        _ => Ok(()),
    }
}

/// A `str` field with a default (present JSON null is refused).
fn default_str(obj: &Object<'_>, what: &str, name: &str) -> Result<(), Reject> {
    match obj.get(name) {
        Some(v) if string_value(v).is_none() => {
            Err(schema(what, format!("Expected `str` at `$.{name}`")))
        }
        _ => Ok(()),
    }
}

fn req_int(obj: &Object<'_>, what: &str, name: &str) -> Result<i128, Reject> {
    json_int(required(obj, what, name)?)
        .ok_or_else(|| schema(what, format!("Expected `int` at `$.{name}`")))
}

fn opt_int(obj: &Object<'_>, what: &str, name: &str) -> Result<Option<i128>, Reject> {
    match obj.given(name) {
        None => Ok(None),
        Some(v) => json_int(v)
            .map(Some)
            .ok_or_else(|| schema(what, format!("Expected `int | null` at `$.{name}`"))),
    }
}

fn opt_bool(obj: &Object<'_>, what: &str, name: &str) -> Result<(), Reject> {
    match obj.given(name).map(RawValue::get) {
        None | Some("true" | "false") => Ok(()),
        Some(_) => Err(schema(
            what,
            format!("Expected `bool | null` at `$.{name}`"),
        )),
    }
}

fn req_seq(obj: &Object<'_>, what: &str) -> Result<i64, Reject> {
    let seq = req_int(obj, what, "seq")?;
    i64::try_from(seq)
        .ok()
        .filter(|s| *s >= 0)
        .ok_or_else(|| schema(what, "Expected `int` >= 0 and <= 2^63-1 at `$.seq`"))
}

fn side(obj: &Object<'_>, what: &str) -> Result<bool, Reject> {
    match string_value(required(obj, what, "side")?).as_deref() {
        Some("buy") => Ok(false),
        Some("sell") => Ok(true),
        _ => Err(schema(what, "Invalid enum value at `$.side`")),
    }
}

fn str_array<'a>(obj: &Object<'a>, what: &str, name: &str) -> Result<Vec<Cow<'a, str>>, Reject> {
    let Some(raw) = obj.get(name) else {
        return Ok(Vec::new());
    };
    let bad = || schema(what, format!("Expected `array` of `str` at `$.{name}`"));
    let items: Vec<&'a RawValue> = serde_json::from_str(raw.get()).map_err(|_| bad())?;
    items
        .into_iter()
        .map(|v| string_value(v).ok_or_else(bad))
        .collect()
}

fn objects<'a>(raw: &'a RawValue, what: &str, name: &str) -> Result<Vec<Object<'a>>, Reject> {
    serde_json::from_str(raw.get())
        .map_err(|_| schema(what, format!("Expected `array` of `object` at `$.{name}`")))
}

/// Book levels: objects with `price` and `qty` (any JSON values, checked later).
fn levels<'a>(
    obj: &Object<'a>,
    what: &str,
    name: &str,
) -> Result<Vec<(&'a RawValue, &'a RawValue)>, Reject> {
    let Some(raw) = obj.get(name) else {
        return Ok(Vec::new());
    };
    objects(raw, what, name)?
        .iter()
        .map(|level| {
            Ok((
                required(level, what, "price")?,
                required(level, what, "qty")?,
            ))
        })
        .collect()
}

/// What the schema stage decided: the value checks still to run, and the frame.
enum Parsed<'a> {
    Snapshot {
        product: Cow<'a, str>,
        seq: i64,
        timestamp_ms: i128,
        tick_size: Option<&'a RawValue>,
        bids: Vec<(&'a RawValue, &'a RawValue)>,
        asks: Vec<(&'a RawValue, &'a RawValue)>,
    },
    Delta {
        product: Cow<'a, str>,
        sell: bool,
        seq: i64,
        price: &'a RawValue,
        qty: &'a RawValue,
        timestamp_ms: i128,
        hot: bool,
    },
    Other {
        products: Vec<Cow<'a, str>>,
        checks: Vec<Checks<'a>>,
    },
}

fn trade<'a>(obj: &Object<'a>, what: &str) -> Result<(Cow<'a, str>, Checks<'a>), Reject> {
    // a nested trade is a tagged struct: its `feed`, when given, must be "trade"
    if let Some(feed) = obj.get("feed")
        && string_value(feed).as_deref() != Some("trade")
    {
        return Err(schema(what, "Invalid value at `$.feed`"));
    }
    let product = req_str(obj, what, "product_id")?;
    req_str(obj, what, "uid")?;
    side(obj, what)?;
    req_str(obj, what, "type")?;
    req_seq(obj, what)?;
    let time = req_int(obj, what, "time")?;
    let qty = required(obj, what, "qty")?;
    let price = required(obj, what, "price")?;
    Ok((
        product,
        Checks {
            numbers: vec![("price", Some(price)), ("qty", Some(qty))],
            millis: vec![("time_ms", Some(time))],
            ..Checks::default()
        },
    ))
}

/// The schema stage of a data message of feed `feed` (msgspec's validation).
fn parse_data<'a>(feed: &str, obj: &Object<'a>) -> Result<Parsed<'a>, Reject> {
    let what = feed;
    match feed {
        "book" => {
            let product = req_str(obj, what, "product_id")?;
            let sell = side(obj, what)?;
            let seq = req_seq(obj, what)?;
            let price = required(obj, what, "price")?;
            let qty = required(obj, what, "qty")?;
            let timestamp_ms = req_int(obj, what, "timestamp")?;
            Ok(Parsed::Delta {
                product,
                sell,
                seq,
                price,
                qty,
                timestamp_ms,
                hot: false,
            })
        }
        "book_snapshot" => {
            let product = req_str(obj, what, "product_id")?;
            let timestamp_ms = req_int(obj, what, "timestamp")?;
            let seq = req_seq(obj, what)?;
            let bids = levels(obj, what, "bids")?;
            let asks = levels(obj, what, "asks")?;
            Ok(Parsed::Snapshot {
                product,
                seq,
                timestamp_ms,
                tick_size: obj.get("tickSize"),
                bids,
                asks,
            })
        }
        "trade" => {
            let (product, checks) = trade(obj, what)?;
            Ok(Parsed::Other {
                products: vec![product],
                checks: vec![checks],
            })
        }
        "trade_snapshot" => {
            req_str(obj, what, "product_id")?;
            let raw = required(obj, what, "trades")?;
            let mut products = Vec::new();
            let mut checks = Vec::new();
            for item in objects(raw, what, "trades")? {
                let (product, check) = trade(&item, what)?;
                products.push(product);
                checks.push(check);
            }
            Ok(Parsed::Other { products, checks })
        }
        "ticker" => {
            let product = req_str(obj, what, "product_id")?;
            let time = req_int(obj, what, "time")?;
            opt_str(obj, what, "leverage")?;
            opt_bool(obj, what, "suspended")?;
            opt_bool(obj, what, "post_only")?;
            opt_str(obj, what, "tag")?;
            opt_str(obj, what, "pair")?;
            let maturity = opt_int(obj, what, "maturityTime")?;
            let next_funding = opt_int(obj, what, "next_funding_rate_time")?;
            if let Some(greeks) = obj.given("greeks")
                && !greeks.get().starts_with('{')
            {
                return Err(schema(what, "Expected `object | null` at `$.greeks`"));
            }
            let optional = [
                ("bid", "bid"),
                ("ask", "ask"),
                ("bid_size", "bid_size"),
                ("ask_size", "ask_size"),
                ("volume", "volume"),
                ("volume_quote", "volumeQuote"),
                ("dtm", "dtm"),
                ("index", "index"),
                ("premium", "premium"),
                ("last", "last"),
                ("change", "change"),
                ("open", "open"),
                ("high", "high"),
                ("low", "low"),
                ("open_interest", "openInterest"),
                ("mark_price", "markPrice"),
                ("funding_rate", "funding_rate"),
                ("funding_rate_prediction", "funding_rate_prediction"),
                ("relative_funding_rate", "relative_funding_rate"),
                (
                    "relative_funding_rate_prediction",
                    "relative_funding_rate_prediction",
                ),
            ];
            Ok(Parsed::Other {
                products: vec![product],
                checks: vec![Checks {
                    optional: optional
                        .iter()
                        .map(|(name, wire)| (*name, obj.get(wire)))
                        .collect(),
                    millis: vec![
                        ("time_ms", Some(time)),
                        ("maturity_time_ms", maturity),
                        ("next_funding_rate_time_ms", next_funding),
                    ],
                    ..Checks::default()
                }],
            })
        }
        "ticker_lite" => {
            req_str(obj, what, "product_id")?;
            opt_str(obj, what, "tag")?;
            opt_str(obj, what, "pair")?;
            let maturity = opt_int(obj, what, "maturityTime")?;
            let optional = ["bid", "ask", "change", "premium", "volume", "dtm"];
            // the pipeline does not record ticker_lite, so its product id is not checked
            Ok(Parsed::Other {
                products: Vec::new(),
                checks: vec![Checks {
                    optional: optional.iter().map(|n| (*n, obj.get(n))).collect(),
                    millis: vec![("maturity_time_ms", maturity)],
                    ..Checks::default()
                }],
            })
        }
        "heartbeat" => {
            let time = req_int(obj, what, "time")?;
            Ok(Parsed::Other {
                products: Vec::new(),
                checks: vec![Checks {
                    millis: vec![("time_ms", Some(time))],
                    ..Checks::default()
                }],
            })
        }
        _ => Err(Reject::new(
            UNKNOWN_MESSAGE,
            format!("feed {}", short(feed)),
        )),
    }
}

/// The value-check stage (the Python decoder's `_validated`), giving the decoded frame.
fn checked<'a>(parsed: Parsed<'a>) -> Result<Frame<'a>, Reject> {
    match parsed {
        Parsed::Delta {
            product,
            sell,
            seq,
            price,
            qty,
            timestamp_ms,
            hot,
        } => {
            let bad = |name: &str, v: &RawValue| {
                Reject::new(
                    BAD_NUMBER,
                    format!("{name} is not a number: {}", short(v.get())),
                )
            };
            // the Python hot path admits the delta when all three pass its looser checks;
            // otherwise the full checks run in order: price, qty, timestamp
            let in_range = (0..=MAX_MS).contains(&timestamp_ms);
            let (price, qty) = match (number_token_as(price, hot), number_token_as(qty, hot)) {
                (Some(p), Some(q)) if in_range && (hot || (p.key.is_some() && q.key.is_some())) => {
                    (p, q)
                }
                _ => {
                    let p = number_token(price).ok_or_else(|| bad("price", price))?;
                    let q = number_token(qty).ok_or_else(|| bad("qty", qty))?;
                    (p, q)
                }
            };
            let timestamp_ms = millis(timestamp_ms, "timestamp_ms")?;
            Ok(Frame::Delta {
                product,
                sell,
                seq,
                price,
                qty,
                timestamp_ms,
            })
        }
        Parsed::Snapshot {
            product,
            seq,
            timestamp_ms,
            tick_size,
            bids,
            asks,
        } => {
            Checks {
                optional: vec![("tick_size", tick_size)],
                ..Checks::default()
            }
            .run()?;
            let timestamp_ms = millis(timestamp_ms, "timestamp_ms")?;
            let side = |name: &str, levels: Vec<(&'a RawValue, &'a RawValue)>| {
                levels
                    .into_iter()
                    .enumerate()
                    .map(|(i, (p, q))| match (number_token(p), number_token(q)) {
                        (Some(p), Some(q)) => Ok((p, q)),
                        _ => Err(Reject::new(
                            BAD_NUMBER,
                            format!("{name}[{i}] is not a (price, qty) of numbers"),
                        )),
                    })
                    .collect::<Result<Vec<_>, Reject>>()
            };
            let bids = side("bids", bids)?;
            let asks = side("asks", asks)?;
            Ok(Frame::Snapshot {
                product,
                seq,
                timestamp_ms,
                bids,
                asks,
            })
        }
        Parsed::Other { products, checks } => {
            for check in &checks {
                check.run()?;
            }
            Ok(Frame::Other { products })
        }
    }
}

fn millis(ms: i128, name: &str) -> Result<i64, Reject> {
    if (0..=MAX_MS).contains(&ms) {
        i64::try_from(ms).map_err(|_| Reject::new(BAD_TIMESTAMP, name.to_owned()))
    } else {
        Err(Reject::new(
            BAD_TIMESTAMP,
            format!("{name} out of range: {ms}"),
        ))
    }
}

/// The schema stage of a control event (`{"event": ...}`): Ok(acked product ids) or schema.
fn parse_control<'a>(event: &str, obj: &Object<'a>) -> Result<Vec<Cow<'a, str>>, Reject> {
    let what = event;
    match event {
        "info" => {
            opt_int(obj, what, "version")?;
            Ok(Vec::new())
        }
        "subscribe" | "unsubscribe" => {
            req_str(obj, what, "feed")?;
            str_array(obj, what, "product_ids")?;
            for name in ["api_key", "original_challenge", "signed_challenge"] {
                opt_str(obj, what, name)?;
            }
            Ok(Vec::new())
        }
        "subscribed" | "unsubscribed" | "subscribed_failed" | "unsubscribed_failed" => {
            opt_str(obj, what, "feed")?;
            let products = str_array(obj, what, "product_ids")?;
            opt_str(obj, what, "message")?;
            // the pipeline checks the product ids of `subscribed` acks only
            Ok(if event == "subscribed" {
                products
            } else {
                Vec::new()
            })
        }
        "error" | "alert" => {
            default_str(obj, what, "message")?;
            Ok(Vec::new())
        }
        "challenge" => {
            opt_str(obj, what, "message")?;
            opt_str(obj, what, "api_key")?;
            Ok(Vec::new())
        }
        _ => Err(Reject::new(
            UNKNOWN_MESSAGE,
            format!("event {}", short(event)),
        )),
    }
}

/// Whether `b` starts with a complete JSON number token (what follows it is not read).
fn number_prefix(b: &[u8]) -> bool {
    let digits = |from: usize| {
        b[from.min(b.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    let whole = digits(i);
    if whole == 0 {
        return false;
    }
    if b[i] == b'0' && whole > 1 {
        return false; // a leading zero
    }
    i += whole;
    if b.get(i) == Some(&b'.') {
        let frac = digits(i + 1);
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(i) == 0 {
            return false;
        }
    }
    true
}

/// The reject of a frame that does not start with `{`. Like msgspec, only the first JSON
/// value's first token is read: a well-formed token of another type is `unknown_message`
/// (whatever follows it), anything else `malformed_json`.
fn not_an_object(text: &str) -> Reject {
    let rest = text.trim_start_matches([' ', '\t', '\n', '\r']);
    let b = rest.as_bytes();
    let well_formed = match b.first() {
        Some(b'[') => true,
        Some(b'"') => {
            let mut i = 1;
            let mut end = None;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => {
                        end = Some(i);
                        break;
                    }
                    _ => i += 1,
                }
            }
            end.and_then(|e| rest.get(..=e))
                .is_some_and(|s| serde_json::from_str::<String>(s).is_ok())
        }
        Some(b't') => rest.starts_with("true"),
        Some(b'f') => rest.starts_with("false"),
        Some(b'n') => rest.starts_with("null"),
        Some(b'-' | b'0'..=b'9') => number_prefix(b),
        _ => false,
    };
    if well_formed {
        Reject::new(UNKNOWN_MESSAGE, "not a JSON object")
    } else {
        Reject::new(MALFORMED_JSON, "not a JSON value")
    }
}

/// Decode one received frame as `decode_futures` does (same accept/reject decisions and
/// reason codes).
pub fn decode(frame: &[u8], max_frame_bytes: usize) -> Result<Frame<'_>, Reject> {
    if frame.len() > max_frame_bytes {
        return Err(Reject::new(
            TOO_LARGE,
            format!("{} bytes > {max_frame_bytes}", frame.len()),
        ));
    }
    let text = std::str::from_utf8(frame).map_err(|e| {
        Reject::new(
            BAD_ENCODING,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let first = text
        .bytes()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        return Err(not_an_object(text));
    }
    let obj: Object<'_> =
        serde_json::from_str(text).map_err(|err| Reject::new(MALFORMED_JSON, err.to_string()))?;
    // the fast path: a data message of a known feed that passes the schema
    let feed_raw = obj.get("feed");
    let feed = feed_raw.and_then(string_value);
    let known_feed = feed.as_deref().filter(|f| FEEDS.contains(f));
    let data = known_feed.map(|f| parse_data(f, &obj));
    if let Some(Ok(mut parsed)) = data {
        if let Parsed::Delta {
            hot, price, qty, ..
        } = &mut parsed
        {
            // the hot path of the Python decoder: exactly the 20 quote characters of a delta
            // (it matters only for an exponent the recorder cannot render)
            let exponent = |r: &RawValue| r.get().bytes().any(|c| c | 0x20 == b'e');
            *hot = (exponent(price) || exponent(qty))
                && frame.iter().filter(|&&c| c == b'"').count() == 20;
        }
        return checked(parsed);
    }
    // the slow path: control events first, then the data message's schema failure
    if let Some(event) = obj.given("event") {
        let name = string_value(event);
        return match name.as_deref() {
            Some(name) if EVENTS.contains(&name) => {
                parse_control(name, &obj).map(|products| Frame::Other { products })
            }
            _ => Err(Reject::new(
                UNKNOWN_MESSAGE,
                format!("event {}", short(event.get())),
            )),
        };
    }
    match (feed_raw.filter(|f| f.get() != "null"), data) {
        (None, _) => Err(Reject::new(UNKNOWN_MESSAGE, "neither 'event' nor 'feed'")),
        (Some(_), Some(Err(reject))) => Err(reject),
        (Some(raw), _) => Err(Reject::new(
            UNKNOWN_MESSAGE,
            format!("feed {}", short(raw.get())),
        )),
    }
}

/// The pipeline's futures product grammar: `[A-Za-z]{2}_[A-Za-z0-9]{1,24}(_[0-9]{6})?`, at
/// most 32 characters.
pub fn valid_product(id: &str) -> bool {
    let b = id.as_bytes();
    if b.is_empty() || id.chars().count() > MAX_SYMBOL_LENGTH || b.len() < 4 {
        return false;
    }
    if !(b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() && b[2] == b'_') {
        return false;
    }
    let rest = &b[3..];
    let body_len = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if !(1..=24).contains(&body_len) {
        return false;
    }
    let tail = &rest[body_len..];
    tail.is_empty()
        || (tail.len() == 7 && tail[0] == b'_' && tail[1..].iter().all(u8::is_ascii_digit))
}

// ------------------------------------------------------------------------------------------
// Books.

/// A level's price and quantity text as received, in one buffer (reused when the level
/// changes): the price is `text[..split]`, the quantity the rest.
#[derive(Debug, Clone, Default)]
struct LevelText {
    text: String,
    split: usize,
}

impl LevelText {
    fn set(&mut self, price: &str, qty: &str) {
        self.text.clear();
        self.text.push_str(price);
        self.text.push_str(qty);
        self.split = price.len();
    }

    fn pair(&self) -> (&str, &str) {
        let t = self.text.as_str();
        (
            t.get(..self.split).unwrap_or(""),
            t.get(self.split..).unwrap_or(""),
        )
    }
}

/// One side: exact key -> the level's text.
type Side = BTreeMap<NumKey, LevelText>;

/// The full-depth book of one product (the Python `FuturesBook` keyed by exact value).
#[derive(Debug, Clone, Default)]
pub struct FuturesBook {
    bids: Side,
    asks: Side,
    seq: i64,
    timestamp_ms: i64,
}

/// Set one level (a zero quantity removes it); Err(why) for a negative quantity or a token
/// without an exact value, as the Python book raises.
fn set_level(side: &mut Side, price: &Token<'_>, qty: &Token<'_>) -> Result<(), String> {
    let (price_key, qty_key) = level_keys(price, qty)?;
    if qty_key.is_zero() {
        side.remove(&price_key);
    } else {
        side.entry(price_key)
            .or_default()
            .set(price.text.as_ref(), qty.text.as_ref());
    }
    Ok(())
}

fn level_keys(price: &Token<'_>, qty: &Token<'_>) -> Result<(NumKey, NumKey), String> {
    let Some(price_key) = price.key else {
        return Err(format!("number out of range: {}", short(&price.text)));
    };
    let Some(qty_key) = qty.key else {
        return Err(format!("number out of range: {}", short(&qty.text)));
    };
    if qty_key.is_negative() {
        return Err(format!("negative quantity {}", short(&qty.text)));
    }
    Ok((price_key, qty_key))
}

impl FuturesBook {
    /// The `seq` of the last snapshot or delta applied.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Exchange time of the last frame applied, epoch ms.
    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// Best bid at or above best ask.
    pub fn crossed(&self) -> bool {
        match (self.bids.last_key_value(), self.asks.first_key_value()) {
            (Some((bid, _)), Some((ask, _))) => bid >= ask,
            _ => false,
        }
    }

    /// Levels as `(price, qty)` text, best first, at most `depth` of them.
    pub fn levels(&self, ask: bool, depth: usize) -> Vec<(&str, &str)> {
        if ask {
            self.asks
                .values()
                .take(depth)
                .map(LevelText::pair)
                .collect()
        } else {
            self.bids
                .values()
                .rev()
                .take(depth)
                .map(LevelText::pair)
                .collect()
        }
    }

    /// Number of levels on both sides.
    pub fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
    }

    /// True without levels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-frame verdict columns of one batch (all the same length), plus reject details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub verdict: Vec<u8>,
    pub kind: Vec<u8>,
    pub reason: Vec<u8>,
    /// Index into [`FuturesBooks::products`], [`NO_PRODUCT`] for other frames.
    pub product: Vec<u32>,
    pub seq: Vec<i64>,
    /// The `seq` continuity called for (gaps, duplicates, regressions), else [`NONE_I64`].
    pub expected: Vec<i64>,
    pub ts_ns: Vec<i64>,
    pub crossed: Vec<u8>,
    /// A delta's price and quantity as integer units at their own scale (None: [`NONE_I64`]).
    pub price: Vec<i64>,
    pub price_scale: Vec<u8>,
    pub qty: Vec<i64>,
    pub qty_scale: Vec<u8>,
    /// `(frame index, detail)` of every rejected frame.
    pub details: Vec<(u32, String)>,
}

impl Verdicts {
    fn with_capacity(n: usize) -> Self {
        Verdicts {
            verdict: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            reason: Vec::with_capacity(n),
            product: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
            ts_ns: Vec::with_capacity(n),
            crossed: Vec::with_capacity(n),
            price: Vec::with_capacity(n),
            price_scale: Vec::with_capacity(n),
            qty: Vec::with_capacity(n),
            qty_scale: Vec::with_capacity(n),
            details: Vec::new(),
        }
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.verdict.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.verdict.is_empty()
    }
}

/// One frame's verdict before it is pushed into the columns.
struct Row {
    verdict: u8,
    kind: u8,
    reason: u8,
    product: u32,
    seq: i64,
    expected: i64,
    ts_ns: i64,
    crossed: bool,
    price: Option<Decimal>,
    qty: Option<Decimal>,
    detail: Option<String>,
}

impl Row {
    fn new(verdict: u8) -> Row {
        Row {
            verdict,
            kind: NO_KIND,
            reason: 0,
            product: NO_PRODUCT,
            seq: NONE_I64,
            expected: NONE_I64,
            ts_ns: NONE_I64,
            crossed: false,
            price: None,
            qty: None,
            detail: None,
        }
    }

    fn reject(mut self, reason: u8, detail: String) -> Row {
        self.verdict = REJECT;
        self.reason = reason;
        self.detail = Some(detail);
        self
    }
}

/// The Futures books of one stream, fed in batches of frames.
#[derive(Debug, Clone)]
pub struct FuturesBooks {
    max_frame_bytes: usize,
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
    /// By product id: the valid book (None before a snapshot and after a gap or apply error).
    books: Vec<Option<FuturesBook>>,
    /// The product id found last (frames of one product often come in runs).
    last: u32,
}

impl Default for FuturesBooks {
    fn default() -> Self {
        FuturesBooks::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FuturesBooks {
    /// Books of no product yet; frames above `max_frame_bytes` are rejected unread.
    pub fn new(max_frame_bytes: usize) -> Self {
        FuturesBooks {
            max_frame_bytes,
            names: Vec::new(),
            ids: HashMap::new(),
            books: Vec::new(),
            last: 0,
        }
    }

    /// Product ids by index (what the `product` column indexes), exactly as sent.
    pub fn products(&self) -> &[Box<str>] {
        &self.names
    }

    /// The valid book of `product` (as sent), if any.
    pub fn book(&self, product: &str) -> Option<&FuturesBook> {
        let id = *self.ids.get(product)?;
        self.books.get(id as usize)?.as_ref()
    }

    fn product_id(&mut self, product: &str) -> u32 {
        if let Some(name) = self.names.get(self.last as usize)
            && name.as_ref() == product
        {
            return self.last;
        }
        if let Some(&id) = self.ids.get(product) {
            self.last = id;
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(NO_PRODUCT);
        self.names.push(product.into());
        self.ids.insert(product.into(), id);
        self.books.push(None);
        id
    }

    /// Decode and apply each frame; one verdict per frame, in order.
    pub fn feed<'f, I>(&mut self, frames: I) -> Verdicts
    where
        I: IntoIterator<Item = &'f [u8]>,
    {
        let frames = frames.into_iter();
        let mut out = Verdicts::with_capacity(frames.size_hint().0);
        for (index, frame) in frames.enumerate() {
            let row = self.one(frame);
            out.verdict.push(row.verdict);
            out.kind.push(row.kind);
            out.reason.push(row.reason);
            out.product.push(row.product);
            out.seq.push(row.seq);
            out.expected.push(row.expected);
            out.ts_ns.push(row.ts_ns);
            out.crossed.push(u8::from(row.crossed));
            out.price.push(row.price.map_or(NONE_I64, |d| d.mantissa));
            out.price_scale.push(row.price.map_or(0, |d| d.scale));
            out.qty.push(row.qty.map_or(NONE_I64, |d| d.mantissa));
            out.qty_scale.push(row.qty.map_or(0, |d| d.scale));
            if let Some(detail) = row.detail {
                out.details
                    .push((u32::try_from(index).unwrap_or(u32::MAX), detail));
            }
        }
        out
    }

    fn one(&mut self, frame: &[u8]) -> Row {
        let decoded = match decode(frame, self.max_frame_bytes) {
            Ok(f) => f,
            Err(r) => return Row::new(REJECT).reject(r.reason, r.detail),
        };
        match decoded {
            Frame::Other { products } => match products.iter().find(|p| !valid_product(p)) {
                Some(bad) => Row::new(REJECT).reject(
                    BAD_SYMBOL,
                    format!("futures symbol {:?}: not a futures product id", short(bad)),
                ),
                None => Row::new(SKIPPED),
            },
            Frame::Snapshot {
                product,
                seq,
                timestamp_ms,
                bids,
                asks,
            } => {
                let mut row = Row::new(OK);
                row.kind = SNAPSHOT;
                row.seq = seq;
                row.ts_ns = timestamp_ms * 1_000_000;
                if !valid_product(&product) {
                    return row.reject(
                        BAD_SYMBOL,
                        format!(
                            "futures symbol {:?}: not a futures product id",
                            short(&product)
                        ),
                    );
                }
                let id = self.product_id(&product);
                row.product = id;
                let slot = match self.books.get_mut(id as usize) {
                    Some(slot) => slot,
                    None => return row.reject(APPLY_ERROR, "too many products".to_owned()),
                };
                // the old epoch ends whatever happens to the new snapshot
                *slot = None;
                let mut book = FuturesBook {
                    seq,
                    timestamp_ms,
                    ..FuturesBook::default()
                };
                for (levels, ask) in [(&bids, false), (&asks, true)] {
                    let side = if ask { &mut book.asks } else { &mut book.bids };
                    for (price, qty) in levels {
                        if let Err(why) = set_level(side, price, qty) {
                            return row.reject(APPLY_ERROR, format!("{product}: {why}"));
                        }
                    }
                }
                row.crossed = book.crossed();
                *slot = Some(book);
                row
            }
            Frame::Delta {
                product,
                sell,
                seq,
                price,
                qty,
                timestamp_ms,
            } => {
                let mut row = Row::new(OK);
                row.kind = DELTA;
                row.seq = seq;
                row.ts_ns = timestamp_ms * 1_000_000;
                row.price = spot::token_decimal(price.text.as_bytes()).ok();
                row.qty = spot::token_decimal(qty.text.as_bytes()).ok();
                if !valid_product(&product) {
                    return row.reject(
                        BAD_SYMBOL,
                        format!(
                            "futures symbol {:?}: not a futures product id",
                            short(&product)
                        ),
                    );
                }
                let id = self.product_id(&product);
                row.product = id;
                let Some(slot) = self.books.get_mut(id as usize) else {
                    return row.reject(APPLY_ERROR, "too many products".to_owned());
                };
                let Some(book) = slot.as_mut() else {
                    return row.reject(
                        UPDATE_BEFORE_SNAPSHOT,
                        "futures book delta without a snapshot".to_owned(),
                    );
                };
                if let Err(why) = level_keys(&price, &qty) {
                    *slot = None;
                    return row.reject(APPLY_ERROR, format!("{product}: {why}"));
                }
                let expected = book.seq.saturating_add(1);
                if seq < expected {
                    row.expected = expected;
                    let reason = if seq == book.seq {
                        SEQ_DUPLICATE
                    } else {
                        SEQ_REGRESSION
                    };
                    return row.reject(reason, format!("seq {seq}, expected {expected}"));
                }
                let side = if sell { &mut book.asks } else { &mut book.bids };
                if let Err(why) = set_level(side, &price, &qty) {
                    *slot = None;
                    return row.reject(APPLY_ERROR, format!("{product}: {why}"));
                }
                book.seq = seq;
                book.timestamp_ms = timestamp_ms;
                row.crossed = book.crossed();
                if seq > expected {
                    // applied, then the epoch ends: deltas are refused until a snapshot
                    row.verdict = GAP;
                    row.expected = expected;
                    *slot = None;
                }
                row
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> NumKey {
        match text_token_key(text) {
            Some(k) => k,
            None => NumKey {
                sign: 9,
                adjusted: 0,
                hi: 0,
                lo: 0,
            },
        }
    }

    #[test]
    fn keys_order_exactly() {
        assert_eq!(key("34892"), key("34892.0"));
        assert_eq!(key("34892"), key("3.4892e4"));
        assert_eq!(key("0"), key("-0.000"));
        assert!(key("0.1") < key("0.10000000000000000000000000000000000000000000001"));
        assert!(key("-2") < key("-1.5"));
        assert!(key("-0.5") < key("0"));
        assert!(key("1e-56") > key("0"));
        assert!(key("99") < key("100"));
        assert!(key("1.5") < key("1.51"));
        assert_eq!(key("10.5"), key("10.50"));
        assert_eq!(key("1005e-2"), key("10.05"));
        // zeros around the 38th significant digit, where packing moves to the second word
        let long = format!("1{}1", "0".repeat(40));
        assert_eq!(key(&long), key(&format!("{long}.000")));
        assert!(key(&long) > key(&format!("1{}", "0".repeat(41))));
        assert!(key(&long) < key(&format!("1{}2", "0".repeat(40))));
        assert_eq!(key(&format!("0.{}5", "0".repeat(50))), key("5e-51"));
        let mut sorted = ["10", "9.99", "-3", "0.001", "1E+2", "0"].map(key);
        sorted.sort();
        assert_eq!(sorted, ["-3", "0", "0.001", "9.99", "10", "100"].map(key));
    }

    #[test]
    fn tokens_follow_the_python_decoder() {
        for bad in [
            "01", "1.", ".5", "+1", "1e", "1e999", "1E-57", "--1", "1 ", "١",
        ] {
            assert!(text_token_key(bad).is_none(), "{bad}");
        }
        for good in ["0", "-0", "1e38", "1E-56", "-6.2604214e-11", "1.50e2"] {
            assert!(text_token_key(good).is_some(), "{good}");
        }
        assert!(text_token_key(&"1".repeat(65)).is_none());
        assert!(text_token_key(&"1".repeat(64)).is_some());
        assert!(int_token_key(&"9".repeat(38)).is_some());
        assert!(int_token_key(&"9".repeat(39)).is_none());
    }

    #[test]
    fn product_grammar() {
        for good in ["PI_XBTUSD", "pi_xbtusd", "FI_XBTUSD_250627", "PF_A"] {
            assert!(valid_product(good), "{good}");
        }
        for bad in [
            "",
            "PIXBTUSD",
            "P1_X",
            "PI_",
            "PI_X-Y",
            "PI_X_12345",
            "PI_X_1234567",
        ] {
            assert!(!valid_product(bad), "{bad}");
        }
        assert!(!valid_product(&format!("FI_{}_250627", "A".repeat(24))));
    }

    fn reason(frame: &str) -> u8 {
        match decode(frame.as_bytes(), DEFAULT_MAX_FRAME_BYTES) {
            Ok(_) => 0,
            Err(r) => r.reason,
        }
    }

    const DELTA: &str = r#"{"feed":"book","product_id":"PI_XBTUSD","side":"sell","seq":11,"price":34892.5,"qty":2,"timestamp":1612269825817}"#;

    #[test]
    fn decode_reasons() {
        assert_eq!(reason(DELTA), 0);
        assert_eq!(reason("[1]"), UNKNOWN_MESSAGE);
        assert_eq!(reason("{"), MALFORMED_JSON);
        assert_eq!(reason(r#"{"a":1}"#), UNKNOWN_MESSAGE);
        assert_eq!(reason(r#"{"feed":"nope"}"#), UNKNOWN_MESSAGE);
        assert_eq!(reason(r#"{"event":"nope"}"#), UNKNOWN_MESSAGE);
        assert_eq!(
            reason(r#"{"feed":"book","product_id":"PI_XBTUSD"}"#),
            SCHEMA
        );
        assert_eq!(reason(&DELTA.replace("34892.5", "\"x\"")), BAD_NUMBER);
        assert_eq!(reason(&DELTA.replace("34892.5", "\"1.5\"")), 0);
        assert_eq!(reason(&DELTA.replace("34892.5", "null")), BAD_NUMBER);
        assert_eq!(reason(&DELTA.replace("1612269825817", "-1")), BAD_TIMESTAMP);
        assert_eq!(reason(&DELTA.replace("1612269825817", "1.5")), SCHEMA);
        assert_eq!(reason(&DELTA.replace("\"sell\"", "\"up\"")), SCHEMA);
        assert_eq!(reason(&DELTA.replace(":11,", ":-1,")), SCHEMA);
        assert_eq!(
            reason(r#"{"event":"subscribed","feed":"book","product_ids":["PI_XBTUSD"]}"#),
            0
        );
        assert_eq!(
            reason(r#"{"event":"subscribed","product_ids":[1]}"#),
            SCHEMA
        );
        assert_eq!(reason(r#"{"event":"error","message":null}"#), SCHEMA);
        assert_eq!(reason(r#"{"feed":"heartbeat","time":1}"#), 0);
        assert_eq!(reason(&format!("{DELTA}x")), MALFORMED_JSON);
        assert!(matches!(
            decode(b"{\"feed\":\"\xff\"}", DEFAULT_MAX_FRAME_BYTES),
            Err(Reject {
                reason: BAD_ENCODING,
                ..
            })
        ));
        assert_eq!(
            decode(DELTA.as_bytes(), 10).map_err(|r| r.reason).err(),
            Some(TOO_LARGE)
        );
    }

    fn snapshot(seq: i64) -> String {
        format!(
            r#"{{"feed":"book_snapshot","product_id":"PI_XBTUSD","timestamp":1,"seq":{seq},"bids":[{{"price":100.0,"qty":1}},{{"price":99.5,"qty":2}}],"asks":[{{"price":101,"qty":3}},{{"price":"102","qty":0}}]}}"#
        )
    }

    fn delta(side: &str, price: &str, qty: &str, seq: i64) -> String {
        format!(
            r#"{{"feed":"book","product_id":"PI_XBTUSD","side":"{side}","seq":{seq},"price":{price},"qty":{qty},"timestamp":5}}"#
        )
    }

    #[test]
    fn book_sequence_rules() {
        let mut books = FuturesBooks::default();
        let frames = [
            delta("buy", "1", "1", 1),
            snapshot(10),
            delta("buy", "100", "0", 11),
            delta("sell", "101.0", "4", 12),
            delta("sell", "101", "4", 12),
            delta("sell", "101", "4", 3),
            delta("buy", "101.5", "1", 13),
            delta("buy", "1", "1", 15),
            delta("buy", "1", "1", 16),
            snapshot(20),
            delta("buy", "1", "-1", 21),
            delta("buy", "1", "1", 22),
        ];
        let v = books.feed(frames.iter().map(|f| f.as_bytes()));
        assert_eq!(
            v.verdict,
            [
                REJECT, OK, OK, OK, REJECT, REJECT, OK, GAP, REJECT, OK, REJECT, REJECT
            ]
        );
        assert_eq!(
            v.reason,
            [
                UPDATE_BEFORE_SNAPSHOT,
                0,
                0,
                0,
                SEQ_DUPLICATE,
                SEQ_REGRESSION,
                0,
                0,
                UPDATE_BEFORE_SNAPSHOT,
                0,
                APPLY_ERROR,
                UPDATE_BEFORE_SNAPSHOT
            ]
        );
        assert_eq!(v.crossed[6], 1);
        assert_eq!(v.expected[7], 14);
        assert_eq!(v.price[3], 1010);
        assert_eq!(v.price_scale[3], 1);
        assert!(books.book("PI_XBTUSD").is_none());
    }

    #[test]
    fn book_levels_keep_the_latest_text() {
        let mut books = FuturesBooks::default();
        let frames = [
            snapshot(1),
            delta("sell", "101.0", "4", 2),
            delta("buy", "99.50", "0.0", 3),
        ];
        let v = books.feed(frames.iter().map(|f| f.as_bytes()));
        assert_eq!(v.verdict, [OK, OK, OK]);
        let Some(book) = books.book("PI_XBTUSD") else {
            unreachable!("the book exists");
        };
        assert_eq!(book.levels(false, 10), [("100.0", "1")]);
        assert_eq!(book.levels(true, 10), [("101.0", "4")]);
        assert_eq!(book.seq(), 3);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut books = FuturesBooks::default();
        let base = snapshot(1).into_bytes();
        let mut frames = Vec::new();
        for i in 0..base.len() {
            let mut f = base.clone();
            f[i] = f[i].wrapping_add(1);
            frames.push(f.clone());
            f.truncate(i);
            frames.push(f);
        }
        let v = books.feed(frames.iter().map(Vec::as_slice));
        assert_eq!(v.len(), frames.len());
    }
}
