//! Spot WebSocket v2 frames for the book channels, decoded without a float.
//!
//! [`classify`] turns one received text frame into a [`Frame`]: a `book` or `level3` message
//! (every price and quantity kept as its exact JSON token, borrowed from the frame through
//! serde_json's `RawValue`), an `instrument` frame's pair precisions, a subscribe/unsubscribe
//! ack, a frame that is recognised and skipped (heartbeat, status, pong, trade, ticker, ohlc),
//! or a [`Reject`] with the reason codes of the Python decoder (`recorder/protocol/spot.py`):
//! `too_large`, `not_utf8`, `malformed_json`, `unknown_message`, `schema`, `bad_number`,
//! `bad_timestamp`.
//!
//! Field rules follow the Python decoder's schema: `symbol`, `bids`, `asks` are required;
//! `checksum` is an optional uint32 (a float, a bool or a value above 2^32-1 is `schema`);
//! `timestamp` is optional RFC3339 text, converted to int64 ns ([`rfc3339_ns`]); a level is an
//! object with `price` and `qty`, a level3 order an object with `order_id`, `limit_price`,
//! `order_qty`, `timestamp` and an optional `event` (`add`, `modify`, `delete`). A price or
//! quantity must be a JSON number or string (anything else is `bad_number`); its digits are
//! checked where the book scales it ([`token_decimal`]). Unknown fields are ignored. Nothing
//! here panics on any input.
//!
//! The frames Kraken sends on the book channels are read by a hand-written scanner (the
//! `fast` submodule) that accepts only a subset of JSON whose result is certain; any other
//! frame goes through serde_json, which decides it ([`classify_general`] is that path alone,
//! the reference the fast path is tested and fuzzed against). [`Scratch`] keeps the decoded
//! vectors between frames.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::decimal::{self, Decimal, MAX_SCALE, NumberError};

mod fast;

/// Reject reason codes (index into [`REASONS`]); 0 means "no reject".
pub const TOO_LARGE: u8 = 1;
/// The frame is not valid UTF-8.
pub const NOT_UTF8: u8 = 2;
/// The frame is not JSON.
pub const MALFORMED_JSON: u8 = 3;
/// Not an object, or an unknown `channel`/`method`.
pub const UNKNOWN_MESSAGE: u8 = 4;
/// A missing or ill-typed field.
pub const SCHEMA: u8 = 5;
/// A price or quantity that is not a number token.
pub const BAD_NUMBER: u8 = 6;
/// A timestamp that is not RFC3339 UTC.
pub const BAD_TIMESTAMP: u8 = 7;
/// A message the book refuses (bad token digits, invalid level, unknown event).
pub const APPLY_ERROR: u8 = 8;
/// A book update with no valid snapshot before it.
pub const UPDATE_BEFORE_SNAPSHOT: u8 = 9;

/// Reason texts by code, as the pipeline writes them in the `rejects` dataset.
pub const REASONS: [&str; 10] = [
    "",
    "too_large",
    "not_utf8",
    "malformed_json",
    "unknown_message",
    "schema",
    "bad_number",
    "bad_timestamp",
    "apply_error",
    "update_before_snapshot",
];

/// Frames longer than this are rejected unread (the Python decoder's default).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Why a frame was rejected: a reason code and a human-readable detail.
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

/// A price or quantity token: the exact JSON text of a number, or a JSON string's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a>(pub &'a str);

impl Token<'_> {
    /// The token's exact decimal (see [`token_decimal`]).
    pub fn decimal(self) -> Result<Decimal, NumberError> {
        token_decimal(self.0.as_bytes())
    }
}

/// One L2 level. `bad` names a field that is not a number token (`bad_number`, reported
/// after the frame's structure is known to be valid, as the Python decoder does).
#[derive(Debug, Clone, Copy)]
pub struct Level<'a> {
    pub price: Token<'a>,
    pub qty: Token<'a>,
    bad: Option<&'static str>,
}

/// One level3 order entry; `event` 1 add, 2 modify, 3 delete, 0 absent (snapshots).
#[derive(Debug, Clone)]
pub struct Order<'a> {
    pub order_id: Cow<'a, str>,
    pub price: Token<'a>,
    pub qty: Token<'a>,
    /// The order's timestamp in int ns (set once the text is validated).
    pub ts_ns: i64,
    pub event: i64,
    timestamp: Cow<'a, str>,
    bad: Option<&'static str>,
}

/// The book of one symbol in one message.
#[derive(Debug, Clone)]
pub struct BookItem<'a, L> {
    pub symbol: Cow<'a, str>,
    pub bids: Vec<L>,
    pub asks: Vec<L>,
    pub checksum: Option<u32>,
    pub ts_ns: Option<i64>,
}

/// A pair's precisions from the instrument channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPrecision {
    pub symbol: String,
    pub price_precision: i64,
    pub qty_precision: i64,
}

/// A successful (or failed) subscribe/unsubscribe ack, reduced to what the books need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub subscribe: bool,
    pub success: bool,
    pub channel: String,
    pub symbol: Option<String>,
    pub depth: Option<i64>,
}

/// What one frame is.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A `book` message: `snapshot` or update, one item per symbol (Kraken sends one).
    Book {
        snapshot: bool,
        items: Vec<BookItem<'a, Level<'a>>>,
    },
    /// A `level3` message.
    Level3 {
        snapshot: bool,
        items: Vec<BookItem<'a, Order<'a>>>,
    },
    /// An `instrument` frame: the pairs' precisions (`snapshot`: the whole list).
    Instrument {
        snapshot: bool,
        pairs: Vec<PairPrecision>,
    },
    /// A subscribe or unsubscribe ack.
    Ack(Ack),
    /// Recognised, not checked here (heartbeat, status, pong, trade, ticker, ohlc).
    Skipped,
}

// ------------------------------------------------------------------------------------------
// Reused vectors.

/// Pooled vectors of each kind kept at most, and the largest capacity kept.
const POOL: usize = 8;
const POOL_CAPACITY: usize = 4096;

/// An empty vector of another element type on the same allocation: `A` and `B` differ only
/// in lifetimes here, and the standard library collects such an empty iterator in place.
fn recycle<A, B>(mut v: Vec<A>) -> Vec<B> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// A pooled vector (a `Vec<T<'static>>` is a `Vec<T<'a>>`: the callers' types coerce).
fn take<T>(pool: &mut Vec<Vec<T>>) -> Vec<T> {
    pool.pop().unwrap_or_default()
}

fn give<A, B>(pool: &mut Vec<Vec<B>>, v: Vec<A>) {
    if pool.len() < POOL && v.capacity() > 0 && v.capacity() <= POOL_CAPACITY {
        pool.push(recycle(v));
    }
}

/// Vectors kept between frames (emptied, their borrows gone), so that decoding the frames of
/// a steady stream allocates nothing: [`classify_reusing`] takes its vectors from here and
/// [`Scratch::reuse_books`] / [`Scratch::reuse_l3`] give a decoded frame's back.
#[derive(Default)]
pub struct Scratch {
    levels: Vec<Vec<Level<'static>>>,
    orders: Vec<Vec<Order<'static>>>,
    raw_books: Vec<Vec<RawItem<'static, Level<'static>>>>,
    raw_l3: Vec<Vec<RawItem<'static, Order<'static>>>>,
    books: Vec<Vec<BookItem<'static, Level<'static>>>>,
    l3: Vec<Vec<BookItem<'static, Order<'static>>>>,
    /// The date-time of the last timestamp parsed.
    time: TimeMemo,
}

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scratch")
            .field("levels", &self.levels.len())
            .field("orders", &self.orders.len())
            .finish_non_exhaustive()
    }
}

impl Scratch {
    /// Keep the vectors of a decoded `book` frame for the next frames.
    pub fn reuse_books(&mut self, mut items: Vec<BookItem<'_, Level<'_>>>) {
        for item in items.drain(..) {
            give(&mut self.levels, item.bids);
            give(&mut self.levels, item.asks);
        }
        give(&mut self.books, items);
    }

    /// Keep the vectors of a decoded `level3` frame for the next frames.
    pub fn reuse_l3(&mut self, mut items: Vec<BookItem<'_, Order<'_>>>) {
        for item in items.drain(..) {
            give(&mut self.orders, item.bids);
            give(&mut self.orders, item.asks);
        }
        give(&mut self.l3, items);
    }
}

/// Element types with a pool in [`Scratch`].
trait Pooled: Sized {
    fn take(scratch: &mut Scratch) -> Vec<Self>;
}

impl Pooled for Level<'_> {
    fn take(scratch: &mut Scratch) -> Vec<Self> {
        take(&mut scratch.levels)
    }
}

impl Pooled for Order<'_> {
    fn take(scratch: &mut Scratch) -> Vec<Self> {
        take(&mut scratch.orders)
    }
}

// ------------------------------------------------------------------------------------------
// Numbers.

/// A token's exact decimal: plain `digits[.digits]` (see [`decimal::parse_decimal`]) or the
/// exponent spelling (`1E-8`, `1.50e+2`) normalised to the decimals it denotes, as the Python
/// reference's `token_to_text` does. Signs and anything else are refused.
pub fn token_decimal(token: &[u8]) -> Result<Decimal, NumberError> {
    if let Some(d) = plain_decimal(token) {
        return Ok(d);
    }
    let Some(e) = token.iter().position(|&c| c == b'e' || c == b'E') else {
        return decimal::parse_decimal(token);
    };
    if token.len() > decimal::MAX_TOKEN_LEN + 8 {
        return Err(NumberError::TooLong(token.len()));
    }
    let base = decimal::parse_decimal(&token[..e])?;
    let exp_text = &token[e + 1..];
    let (negative, digits) = match exp_text.first() {
        Some(b'-') => (true, &exp_text[1..]),
        Some(b'+') => (false, &exp_text[1..]),
        _ => (false, exp_text),
    };
    if digits.is_empty() || digits.len() > 4 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(NumberError::Malformed);
    }
    let magnitude = digits
        .iter()
        .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'));
    let exp = if negative { -magnitude } else { magnitude };
    let scale = i64::from(base.scale) - exp;
    if scale > i64::from(MAX_SCALE) {
        return Err(NumberError::ScaleTooLarge(
            usize::try_from(scale).unwrap_or(usize::MAX),
        ));
    }
    if scale >= 0 {
        let scale = u8::try_from(scale).map_err(|_| NumberError::OutOfRange)?;
        return Ok(Decimal {
            mantissa: base.mantissa,
            scale,
        });
    }
    let shift = u32::try_from(-scale).map_err(|_| NumberError::OutOfRange)?;
    let mantissa = if base.mantissa == 0 {
        0
    } else {
        10i64
            .checked_pow(shift)
            .and_then(|f| base.mantissa.checked_mul(f))
            .ok_or(NumberError::OutOfRange)?
    };
    Ok(Decimal { mantissa, scale: 0 })
}

/// One pass over a plain `digits[.digits]` token that fits (the common case); None sends the
/// token to the validating parser, which says why it is refused.
#[inline]
fn plain_decimal(token: &[u8]) -> Option<Decimal> {
    if token.len() > 18 {
        return plain_decimal_long(token);
    }
    // at most 18 digits: the mantissa cannot overflow, nor the scale exceed MAX_SCALE
    let mut mantissa: i64 = 0;
    let mut dot = usize::MAX;
    for (i, &c) in token.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d < 10 {
            mantissa = mantissa * 10 + i64::from(d);
        } else if c == b'.' && dot == usize::MAX {
            dot = i;
        } else {
            return None;
        }
    }
    let (whole, frac) = match dot {
        usize::MAX => (token.len(), 0),
        dot => (dot, token.len() - dot - 1),
    };
    if whole == 0 || (dot != usize::MAX && frac == 0) {
        return None;
    }
    Some(Decimal {
        mantissa,
        scale: u8::try_from(frac).ok()?,
    })
}

/// [`plain_decimal`] of a token of any length, every step checked.
fn plain_decimal_long(token: &[u8]) -> Option<Decimal> {
    if token.len() > decimal::MAX_TOKEN_LEN {
        return None;
    }
    let mut mantissa: i64 = 0;
    let mut whole = 0usize;
    let mut frac = 0usize;
    let mut dot = false;
    for &c in token {
        if c.is_ascii_digit() {
            mantissa = mantissa.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            if dot {
                frac += 1;
            } else {
                whole += 1;
            }
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            return None;
        }
    }
    if whole == 0 || (dot && frac == 0) || frac > usize::from(MAX_SCALE) {
        return None;
    }
    Some(Decimal {
        mantissa,
        scale: u8::try_from(frac).ok()?,
    })
}

// ------------------------------------------------------------------------------------------
// Timestamps.

fn digits_value(text: &[u8]) -> Option<i64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        text.iter()
            .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0')),
    )
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// RFC3339 UTC text to int64 ns since the Unix epoch, exactly as the Python reference
/// (`rfc3339_to_ns`): `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|+00:00|-00:00|+0000|-0000]`, fields
/// in range (second 60 allowed), the result within `0..=i64::MAX`. None otherwise.
pub fn rfc3339_ns(text: &[u8]) -> Option<i64> {
    rfc3339_ns_memo(text, &mut TimeMemo::default())
}

/// The last two date-times (to the second) [`rfc3339_ns_memo`] parsed: the text of their first
/// 19 bytes and their seconds since the epoch. Timestamps of a stream mostly share one (a
/// level3 message's and those of the older orders it modifies or deletes: two).
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeMemo {
    prefixes: [Option<([u8; 19], i64)>; 2],
    /// The entry the next new date-time replaces.
    next: usize,
}

/// The seconds of a valid `YYYY-MM-DD[T ]HH:MM:SS` (the first 19 bytes of `text`).
fn rfc3339_seconds(text: &[u8]) -> Option<i64> {
    let sep = |i: usize, c: u8| text.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    if !(sep(10, b'T') || sep(10, b' ')) {
        return None;
    }
    let year = digits_value(text.get(0..4)?)?;
    let month = digits_value(text.get(5..7)?)?;
    let day = digits_value(text.get(8..10)?)?;
    let hour = digits_value(text.get(11..13)?)?;
    let minute = digits_value(text.get(14..16)?)?;
    let second = digits_value(text.get(17..19)?)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || day > days_in_month(year, month)
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// [`rfc3339_ns`], reusing the seconds of the previous text when its first 19 bytes (date
/// and time to the second, which alone decide them) are the same.
pub fn rfc3339_ns_memo(text: &[u8], memo: &mut TimeMemo) -> Option<i64> {
    if text.len() < 19 || text.len() > 40 {
        return None;
    }
    let (head, mut rest) = text.split_at(19);
    let known = memo
        .prefixes
        .iter()
        .flatten()
        .find(|(prefix, _)| prefix == head);
    let seconds = match known {
        Some(&(_, seconds)) => seconds,
        None => {
            let seconds = rfc3339_seconds(head)?;
            let mut prefix = [0u8; 19];
            prefix.copy_from_slice(head);
            if let Some(slot) = memo.prefixes.get_mut(memo.next) {
                *slot = Some((prefix, seconds));
            }
            memo.next = (memo.next + 1) % 2;
            seconds
        }
    };
    let mut nanos = 0i64;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let frac = digits_value(&rest[1..=n])?;
        nanos = frac * 10i64.pow(u32::try_from(9 - n).ok()?);
        rest = &rest[1 + n..];
    }
    match rest {
        b"" | b"Z" | b"+00:00" | b"-00:00" | b"+0000" | b"-0000" => {}
        _ => return None,
    }
    let ns = seconds.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    (ns >= 0).then_some(ns)
}

// ------------------------------------------------------------------------------------------
// Field visitors: objects only (a JSON array is not a level), exact tokens borrowed.

/// Why an item's post-decode checks failed (the Python decoder's `__post_init__` checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Late {
    /// A price/qty that is not a number or a string: `bad_number`.
    Number(&'static str),
}

/// A JSON value kept as raw text, classified as a number token or not.
#[derive(Debug, Clone, Copy)]
enum RawToken<'a> {
    Ok(Token<'a>),
    Bad,
}

fn raw_token(raw: &RawValue) -> RawToken<'_> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => RawToken::Ok(Token(text)),
        Some(b'"') => {
            let inner = &text[1..text.len().saturating_sub(1)];
            if inner.contains('\\') {
                // escapes: the Python decoder would unescape; such text is never a plain token
                RawToken::Ok(Token("\\"))
            } else {
                RawToken::Ok(Token(inner))
            }
        }
        _ => RawToken::Bad,
    }
}

fn token_field<'a>(raw: Option<&'a RawValue>) -> RawToken<'a> {
    match raw {
        Some(r) => raw_token(r),
        None => RawToken::Bad,
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Level<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Level<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a book level object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let (mut price, mut qty): (Option<&'de RawValue>, Option<&'de RawValue>) =
                    (None, None);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "price" => price = Some(map.next_value()?),
                        "qty" => qty = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                if price.is_none() {
                    return Err(de::Error::missing_field("price"));
                }
                if qty.is_none() {
                    return Err(de::Error::missing_field("qty"));
                }
                let (price, qty) = (token_field(price), token_field(qty));
                let bad = match (price, qty) {
                    (RawToken::Bad, _) => Some("price"),
                    (_, RawToken::Bad) => Some("qty"),
                    _ => None,
                };
                let token = |t: RawToken<'a>| match t {
                    RawToken::Ok(t) => t,
                    RawToken::Bad => Token(""),
                };
                Ok(Level {
                    price: token(price),
                    qty: token(qty),
                    bad,
                })
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Order<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Order<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a level3 order object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut order_id: Option<Cow<'de, str>> = None;
                let (mut price, mut qty): (Option<&'de RawValue>, Option<&'de RawValue>) =
                    (None, None);
                let mut timestamp: Option<Cow<'de, str>> = None;
                let mut event = 0i64;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "order_id" => order_id = Some(map.next_value()?),
                        "limit_price" => price = Some(map.next_value()?),
                        "order_qty" => qty = Some(map.next_value()?),
                        "timestamp" => timestamp = Some(map.next_value()?),
                        "event" => {
                            let value: Option<Cow<'de, str>> = map.next_value()?;
                            event = match value.as_deref() {
                                None => 0,
                                Some("add") => crate::l3::ADD,
                                Some("modify") => crate::l3::MODIFY,
                                Some("delete") => crate::l3::DELETE,
                                Some(_) => {
                                    return Err(de::Error::custom(
                                        "`event`: expected one of add, modify, delete",
                                    ));
                                }
                            };
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let order_id = order_id.ok_or_else(|| de::Error::missing_field("order_id"))?;
                if price.is_none() {
                    return Err(de::Error::missing_field("limit_price"));
                }
                if qty.is_none() {
                    return Err(de::Error::missing_field("order_qty"));
                }
                let timestamp = timestamp.ok_or_else(|| de::Error::missing_field("timestamp"))?;
                let (price, qty) = (token_field(price), token_field(qty));
                let bad = match (price, qty) {
                    (RawToken::Bad, _) => Some("limit_price"),
                    (_, RawToken::Bad) => Some("order_qty"),
                    _ => None,
                };
                let token = |t: RawToken<'a>| match t {
                    RawToken::Ok(t) => t,
                    RawToken::Bad => Token(""),
                };
                Ok(Order {
                    order_id,
                    price: token(price),
                    qty: token(qty),
                    ts_ns: 0,
                    event,
                    timestamp,
                    bad,
                })
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct RawItem<'a, L> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    bids: Vec<L>,
    asks: Vec<L>,
    #[serde(default)]
    checksum: Option<u32>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
}

/// `data` of the top-level object: decoded in the same pass when the `channel` before it
/// names a book channel (Kraken writes `channel` first), else kept raw for later.
enum Data<'a> {
    Raw(&'a RawValue),
    Book(Vec<RawItem<'a, Level<'a>>>),
    Level3(Vec<RawItem<'a, Order<'a>>>),
}

/// The top-level object: only the keys used to classify it.
struct Envelope<'a> {
    channel: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    kind: Option<&'a RawValue>,
    data: Option<Data<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Envelope<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Envelope<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut env = Envelope {
                    channel: None,
                    method: None,
                    kind: None,
                    data: None,
                };
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match key.as_ref() {
                        "channel" => env.channel = Some(map.next_value()?),
                        "method" => env.method = Some(map.next_value()?),
                        "type" => env.kind = Some(map.next_value()?),
                        "data" => {
                            env.data = Some(match env.channel.map(RawValue::get) {
                                Some("\"book\"") => Data::Book(map.next_value()?),
                                Some("\"level3\"") => Data::Level3(map.next_value()?),
                                _ => Data::Raw(map.next_value()?),
                            });
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(env)
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct AckResultWire<'a> {
    #[serde(borrow)]
    channel: Cow<'a, str>,
    #[serde(default, borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(default)]
    depth: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    snapshot: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    interval: Option<i64>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    event_trigger: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    warnings: Option<Vec<Cow<'a, str>>>,
}

#[derive(Deserialize)]
struct AckWire<'a> {
    success: bool,
    #[serde(default, borrow)]
    result: Option<AckResultWire<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    error: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(default)]
    #[allow(dead_code)]
    req_id: Option<i64>,
    #[serde(default, borrow)]
    time_in: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time_out: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PairWire<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    price_precision: u64,
    qty_precision: u64,
}

#[derive(Deserialize)]
struct InstrumentWire<'a> {
    #[serde(borrow)]
    #[allow(dead_code)]
    assets: Vec<&'a RawValue>,
    #[serde(borrow)]
    pairs: Vec<PairWire<'a>>,
}

// ------------------------------------------------------------------------------------------
// Classification.

fn schema(err: &serde_json::Error) -> Reject {
    Reject::new(SCHEMA, err.to_string())
}

/// A JSON string value's text (`Cow` when escaped), else None.
fn string_value(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    if text.len() >= 2 && text.starts_with('"') && !text.contains('\\') {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).ok().map(Cow::Owned);
    }
    None
}

fn short(raw: &RawValue) -> String {
    let text = raw.get();
    if text.len() <= 32 {
        return text.to_owned();
    }
    format!("{}...", crate::error::clip(text, 32))
}

fn message_type(kind: Option<&RawValue>) -> Result<bool, Reject> {
    let Some(kind) = kind else {
        return Err(Reject::new(SCHEMA, "Object missing required field `type`"));
    };
    match string_value(kind).as_deref() {
        Some("snapshot") => Ok(true),
        Some("update") => Ok(false),
        _ => Err(Reject::new(
            SCHEMA,
            format!("Invalid enum value {} - at `$.type`", short(kind)),
        )),
    }
}

fn late_reject(late: Late) -> Reject {
    match late {
        Late::Number(field) => Reject::new(BAD_NUMBER, format!("`{field}` is not a number token")),
    }
}

fn timestamp_ns(text: &str, field: &str) -> Result<i64, Reject> {
    timestamp_ns_memo(text, field, &mut TimeMemo::default())
}

fn timestamp_ns_memo(text: &str, field: &str, memo: &mut TimeMemo) -> Result<i64, Reject> {
    rfc3339_ns_memo(text.as_bytes(), memo).ok_or_else(|| {
        let shown: String = text.chars().take(48).collect();
        Reject::new(
            BAD_TIMESTAMP,
            format!("`{field}`: not an RFC3339 timestamp: {shown:?}"),
        )
    })
}

fn check_levels(levels: &[Level<'_>]) -> Result<(), Reject> {
    match levels.iter().find_map(|l| l.bad) {
        Some(field) => Err(late_reject(Late::Number(field))),
        None => Ok(()),
    }
}

fn book_items<'a>(
    data: Data<'a>,
    scratch: &mut Scratch,
) -> Result<Vec<BookItem<'a, Level<'a>>>, Reject> {
    let mut raw: Vec<RawItem<'_, Level<'_>>> = match data {
        Data::Book(items) => items,
        Data::Raw(r) => serde_json::from_str(r.get()).map_err(|e| schema(&e))?,
        Data::Level3(_) => return Err(Reject::new(SCHEMA, "level3 data in a book message")),
    };
    let mut items: Vec<BookItem<'a, Level<'a>>> = take(&mut scratch.books);
    for item in raw.drain(..) {
        check_levels(&item.bids)?;
        check_levels(&item.asks)?;
        let (bids, asks) = (item.bids, item.asks);
        let ts_ns = match item.timestamp.as_deref() {
            Some(text) => Some(timestamp_ns_memo(text, "timestamp", &mut scratch.time)?),
            None => None,
        };
        items.push(BookItem {
            symbol: item.symbol,
            bids,
            asks,
            checksum: item.checksum,
            ts_ns,
        });
    }
    give(&mut scratch.raw_books, raw);
    Ok(items)
}

/// Check one side's orders in place (tokens, then timestamps, in order) and set their ns;
/// `last` memoises the previous timestamp text (orders often share it).
fn check_orders<'a>(
    orders: &mut [Order<'a>],
    last: &mut Option<(Cow<'a, str>, i64)>,
    memo: &mut TimeMemo,
) -> Result<(), Reject> {
    for o in orders.iter_mut() {
        if let Some(field) = o.bad {
            return Err(late_reject(Late::Number(field)));
        }
        o.ts_ns = match last {
            Some((text, ns)) if *text == o.timestamp => *ns,
            _ => {
                let ns = timestamp_ns_memo(&o.timestamp, "timestamp", memo)?;
                *last = Some((o.timestamp.clone(), ns));
                ns
            }
        };
    }
    Ok(())
}

fn level3_items<'a>(
    data: Data<'a>,
    scratch: &mut Scratch,
) -> Result<Vec<BookItem<'a, Order<'a>>>, Reject> {
    let mut raw: Vec<RawItem<'_, Order<'_>>> = match data {
        Data::Level3(items) => items,
        Data::Raw(r) => serde_json::from_str(r.get()).map_err(|e| schema(&e))?,
        Data::Book(_) => return Err(Reject::new(SCHEMA, "book data in a level3 message")),
    };
    let mut items: Vec<BookItem<'a, Order<'a>>> = take(&mut scratch.l3);
    for item in raw.drain(..) {
        // the message timestamp first, then each order's tokens and timestamp (Python's order)
        let ts_ns = match item.timestamp.as_deref() {
            Some(text) => Some(timestamp_ns_memo(text, "timestamp", &mut scratch.time)?),
            None => None,
        };
        // orders usually carry the message's timestamp text: seed the memo with it
        let mut last = match (&item.timestamp, ts_ns) {
            (Some(text), Some(ns)) => Some((text.clone(), ns)),
            _ => None,
        };
        let (mut bids, mut asks) = (item.bids, item.asks);
        check_orders(&mut bids, &mut last, &mut scratch.time)?;
        check_orders(&mut asks, &mut last, &mut scratch.time)?;
        items.push(BookItem {
            symbol: item.symbol,
            bids,
            asks,
            checksum: item.checksum,
            ts_ns,
        });
    }
    give(&mut scratch.raw_l3, raw);
    Ok(items)
}

fn instrument(data: &RawValue) -> Result<Vec<PairPrecision>, Reject> {
    let wire: InstrumentWire<'_> = serde_json::from_str(data.get()).map_err(|e| schema(&e))?;
    Ok(wire
        .pairs
        .into_iter()
        .map(|p| PairPrecision {
            symbol: p.symbol.into_owned(),
            price_precision: i64::try_from(p.price_precision).unwrap_or(i64::MAX),
            qty_precision: i64::try_from(p.qty_precision).unwrap_or(i64::MAX),
        })
        .collect())
}

fn ack(frame: &str, subscribe: bool) -> Result<Ack, Reject> {
    let wire: AckWire<'_> = serde_json::from_str(frame).map_err(|e| schema(&e))?;
    if let Some(text) = wire.time_in.as_deref() {
        timestamp_ns(text, "time_in")?;
    }
    if let Some(text) = wire.time_out.as_deref() {
        timestamp_ns(text, "time_out")?;
    }
    let (channel, symbol, depth) = match wire.result {
        Some(r) => (r.channel.into_owned(), r.symbol, r.depth),
        None => (String::new(), None, None),
    };
    let symbol = symbol.or(wire.symbol).map(Cow::into_owned);
    Ok(Ack {
        subscribe,
        success: wire.success,
        channel,
        symbol,
        depth,
    })
}

/// Classify and decode one frame (see the module documentation).
pub fn classify(frame: &[u8], max_frame_bytes: usize) -> Result<Frame<'_>, Reject> {
    classify_with(frame, max_frame_bytes, true, &mut Scratch::default())
}

/// [`classify`] with vectors from `scratch` (give them back with [`Scratch::reuse_books`] or
/// [`Scratch::reuse_l3`]).
pub fn classify_reusing<'f>(
    frame: &'f [u8],
    max_frame_bytes: usize,
    scratch: &mut Scratch,
) -> Result<Frame<'f>, Reject> {
    classify_with(frame, max_frame_bytes, true, scratch)
}

/// [`classify`] through serde_json alone, without the fast path for the book channels' usual
/// frames (the reference that path is tested and fuzzed against).
pub fn classify_general(frame: &[u8], max_frame_bytes: usize) -> Result<Frame<'_>, Reject> {
    classify_with(frame, max_frame_bytes, false, &mut Scratch::default())
}

fn classify_with<'f>(
    frame: &'f [u8],
    max_frame_bytes: usize,
    fast: bool,
    scratch: &mut Scratch,
) -> Result<Frame<'f>, Reject> {
    if frame.len() > max_frame_bytes {
        return Err(Reject::new(
            TOO_LARGE,
            format!("frame exceeds {max_frame_bytes} bytes"),
        ));
    }
    let text = std::str::from_utf8(frame).map_err(|e| {
        Reject::new(
            NOT_UTF8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        // a JSON array, string, number...: not a message; else not JSON at all
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Reject::new(UNKNOWN_MESSAGE, "top level is not a JSON object"),
            Err(err) => Reject::new(MALFORMED_JSON, err.to_string()),
        });
    }
    if let Some((snapshot, data)) = fast.then(|| fast::envelope(text, scratch)).flatten() {
        return book_frame(snapshot, data, scratch);
    }
    classify_serde(text, scratch)
}

/// A `book` or `level3` frame from its decoded `data` (the checks after the JSON pass).
fn book_frame<'a>(
    snapshot: bool,
    data: Data<'a>,
    scratch: &mut Scratch,
) -> Result<Frame<'a>, Reject> {
    match data {
        Data::Level3(_) => Ok(Frame::Level3 {
            snapshot,
            items: level3_items(data, scratch)?,
        }),
        _ => Ok(Frame::Book {
            snapshot,
            items: book_items(data, scratch)?,
        }),
    }
}

/// The general path of [`classify`]: serde_json over a JSON object's text.
fn classify_serde<'a>(text: &'a str, scratch: &mut Scratch) -> Result<Frame<'a>, Reject> {
    let envelope: Envelope<'_> = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(err) => {
            // a wrong type inside `data` is found in the same pass as the syntax: a frame that
            // is not JSON further on is malformed_json, as in the Python decoder
            return Err(match err.classify() {
                serde_json::error::Category::Data => match serde_json::from_str::<IgnoredAny>(text)
                {
                    Ok(_) => schema(&err),
                    Err(syntax) => Reject::new(MALFORMED_JSON, syntax.to_string()),
                },
                _ => Reject::new(MALFORMED_JSON, err.to_string()),
            });
        }
    };
    if let Some(channel) = envelope.channel {
        let name = string_value(channel);
        return match name.as_deref() {
            Some("book") => {
                let snapshot = message_type(envelope.kind)?;
                let data = required_data(envelope.data)?;
                Ok(Frame::Book {
                    snapshot,
                    items: book_items(data, scratch)?,
                })
            }
            Some("level3") => {
                let snapshot = message_type(envelope.kind)?;
                let data = required_data(envelope.data)?;
                Ok(Frame::Level3 {
                    snapshot,
                    items: level3_items(data, scratch)?,
                })
            }
            Some("instrument") => {
                let snapshot = message_type(envelope.kind)?;
                let Data::Raw(data) = required_data(envelope.data)? else {
                    return Err(Reject::new(SCHEMA, "instrument data"));
                };
                Ok(Frame::Instrument {
                    snapshot,
                    pairs: instrument(data)?,
                })
            }
            Some("heartbeat" | "status" | "trade" | "ticker" | "ohlc") => Ok(Frame::Skipped),
            _ => Err(Reject::new(
                UNKNOWN_MESSAGE,
                format!("unknown channel {}", short(channel)),
            )),
        };
    }
    if let Some(method) = envelope.method {
        return match string_value(method).as_deref() {
            Some("subscribe") => Ok(Frame::Ack(ack(text, true)?)),
            Some("unsubscribe") => Ok(Frame::Ack(ack(text, false)?)),
            Some("pong") => Ok(Frame::Skipped),
            _ => Err(Reject::new(
                UNKNOWN_MESSAGE,
                format!("unknown method {}", short(method)),
            )),
        };
    }
    Err(Reject::new(
        UNKNOWN_MESSAGE,
        "object has neither `channel` nor `method`",
    ))
}

fn required_data(data: Option<Data<'_>>) -> Result<Data<'_>, Reject> {
    data.ok_or_else(|| Reject::new(SCHEMA, "Object missing required field `data`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(frame: &str) -> u8 {
        classify(frame.as_bytes(), DEFAULT_MAX_FRAME_BYTES)
            .map(|_| 0)
            .unwrap_or_else(|r| r.reason)
    }

    #[test]
    fn book_snapshot_tokens_are_exact() {
        let frame = br#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":29430.2,"qty":0.18967538}],"asks":[{"price":29430.30,"qty":"0.00100000"}],"checksum":2785033588,"timestamp":"2023-07-30T15:29:58.343415Z"}]}"#;
        let Ok(Frame::Book { snapshot, items }) = classify(frame, 1 << 20) else {
            panic!("not a book frame");
        };
        assert!(snapshot);
        let item = &items[0];
        assert_eq!(item.symbol, "BTC/USD");
        assert_eq!(item.bids[0].price.0, "29430.2");
        assert_eq!(item.asks[0].price.0, "29430.30");
        assert_eq!(item.asks[0].qty.0, "0.00100000");
        assert_eq!(item.checksum, Some(2_785_033_588));
        assert_eq!(item.ts_ns, Some(1_690_730_998_343_415_000));
    }

    #[test]
    fn level3_update_with_events() {
        let frame = br#"{"channel":"level3","type":"update","data":[{"checksum":2841398499,"symbol":"MATIC/USD","bids":[],"asks":[{"event":"delete","order_id":"OOIATY-6EIWY-ACVIUN","limit_price":0.5636,"order_qty":302.89736033,"timestamp":"2023-10-06T18:21:00.097010033Z"},{"event":"add","order_id":"O2BN53","limit_price":0.564,"order_qty":3500.77668626,"timestamp":"2023-10-06T18:20:27.383408052Z"}]}]}"#;
        let Ok(Frame::Level3 { snapshot, items }) = classify(frame, 1 << 20) else {
            panic!("not a level3 frame");
        };
        assert!(!snapshot);
        let asks = &items[0].asks;
        assert_eq!(asks[0].event, crate::l3::DELETE);
        assert_eq!(asks[1].event, crate::l3::ADD);
        assert_eq!(asks[0].ts_ns, 1_696_616_460_097_010_033);
        assert_eq!(items[0].ts_ns, None);
    }

    #[test]
    fn reject_reasons() {
        assert_eq!(reject("not json"), MALFORMED_JSON);
        assert_eq!(reject(r#"{"channel":"book""#), MALFORMED_JSON);
        assert_eq!(reject("[1,2]"), UNKNOWN_MESSAGE);
        assert_eq!(reject("42"), UNKNOWN_MESSAGE);
        assert_eq!(reject(r#"{"channel":"bogus"}"#), UNKNOWN_MESSAGE);
        assert_eq!(reject(r#"{"channel":7}"#), UNKNOWN_MESSAGE);
        assert_eq!(reject(r#"{"method":"nope"}"#), UNKNOWN_MESSAGE);
        assert_eq!(reject(r#"{"x":1}"#), UNKNOWN_MESSAGE);
        assert_eq!(reject(r#"{"channel":"book","type":"x","data":[]}"#), SCHEMA);
        assert_eq!(reject(r#"{"channel":"book","type":"update"}"#), SCHEMA);
        assert_eq!(
            reject(
                r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[[1,2]],"asks":[]}]}"#
            ),
            SCHEMA
        );
        assert_eq!(
            reject(
                r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[],"asks":[],"checksum":1.5}]}"#
            ),
            SCHEMA
        );
        assert_eq!(
            reject(
                r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[],"asks":[],"checksum":4294967296}]}"#
            ),
            SCHEMA
        );
        assert_eq!(
            reject(
                r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[{"price":true,"qty":1}],"asks":[]}]}"#
            ),
            BAD_NUMBER
        );
        assert_eq!(
            reject(
                r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[],"asks":[],"timestamp":"2023-02-30T00:00:00Z"}]}"#
            ),
            BAD_TIMESTAMP
        );
        assert_eq!(
            reject(
                r#"{"channel":"level3","type":"update","data":[{"symbol":"A/B","bids":[{"event":"bump","order_id":"x","limit_price":1,"order_qty":1,"timestamp":"2023-01-01T00:00:00Z"}],"asks":[]}]}"#
            ),
            SCHEMA
        );
        assert_eq!(
            reject(r#"{"method":"subscribe","success":true,"time_in":"yesterday"}"#),
            BAD_TIMESTAMP
        );
        assert_eq!(reject(r#"{"method":"subscribe"}"#), SCHEMA);
        assert_eq!(reject(r#"{"channel":"heartbeat"}"#), 0);
        assert_eq!(reject("\u{1}"), MALFORMED_JSON);
        let r = classify(b"\xff\xfe", 100).unwrap_err();
        assert_eq!(r.reason, NOT_UTF8);
        let r = classify(b"{}", 1).unwrap_err();
        assert_eq!(r.reason, TOO_LARGE);
        let deep = "[".repeat(10_000);
        assert_eq!(reject(&deep), MALFORMED_JSON);
    }

    #[test]
    fn acks_and_instruments() {
        let frame = br#"{"method":"subscribe","result":{"channel":"book","depth":1000,"snapshot":true,"symbol":"ALGO/USD"},"success":true,"time_in":"2023-10-06T17:35:55.219022Z","time_out":"2023-10-06T17:35:55.219067Z"}"#;
        let Ok(Frame::Ack(a)) = classify(frame, 1 << 20) else {
            panic!("not an ack");
        };
        assert!(a.subscribe && a.success);
        assert_eq!(
            (a.channel.as_str(), a.symbol.as_deref(), a.depth),
            ("book", Some("ALGO/USD"), Some(1000))
        );
        let frame = br#"{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD","price_precision":1,"qty_precision":8,"qty_increment":1E-8}]}}"#;
        let Ok(Frame::Instrument { snapshot, pairs }) = classify(frame, 1 << 20) else {
            panic!("not an instrument frame");
        };
        assert!(snapshot);
        assert_eq!(pairs[0].symbol, "BTC/USD");
        assert_eq!((pairs[0].price_precision, pairs[0].qty_precision), (1, 8));
    }

    /// Frames of the fast path's shape (and near it): Kraken's, the sim's, odd but valid ones.
    const FAST_FRAMES: [&str; 9] = [
        r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":29430.2,"qty":0.18967538}],"asks":[{"price":29430.30,"qty":"0.00100000"}],"checksum":2785033588,"timestamp":"2023-07-30T15:29:58.343415Z"}]}"#,
        r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[{"price":93704.2,"qty":0.01680553}],"checksum":2543710389,"timestamp":"2026-09-21T14:13:20.000906Z"}]}"#,
        r#"{"channel":"level3","type":"update","data":[{"checksum":2841398499,"symbol":"MATIC/USD","bids":[],"asks":[{"event":"delete","order_id":"OOIATY-6EIWY-ACVIUN","limit_price":0.5636,"order_qty":302.89736033,"timestamp":"2023-10-06T18:21:00.097010033Z"},{"event":"add","order_id":"O2BN53","limit_price":0.564,"order_qty":3500.77668626,"timestamp":"2023-10-06T18:20:27.383408052Z"}]}]}"#,
        r#"{"channel":"level3","type":"snapshot","data":[{"symbol":"BTC/USD","checksum":1063832831,"bids":[{"order_id":"OTCFZG-YOE2Q-LQKNM3","limit_price":44939.4,"order_qty":0.88968699,"timestamp":"2024-01-08T12:26:39.526146327Z"}],"asks":[{"order_id":"OX","limit_price":"44940.0","order_qty":1E-8,"timestamp":"2024-01-08T12:26:39Z"}],"timestamp":"2024-01-08T12:26:39.5Z"}]}"#,
        r#"{"channel":"level3","type":"update","data":[{"checksum":0,"symbol":"A/B","bids":[{"event":"modify","order_id":"O1","limit_price":-1.5e+2,"order_qty":0,"timestamp":"2023-01-01T00:00:00Z"}],"asks":[]}]}"#,
        "{\n \"channel\" : \"book\" ,\t\"type\":\"update\",\r\"data\" : [ { \"symbol\" : \"X/Y\" , \"bids\" : [ { \"price\" : 1 , \"qty\" : 0 } ] , \"asks\" : [ ] , \"checksum\" : 4294967295 } ] } \n",
        r#"{"channel":"book","type":"update","data":[]}"#,
        r#"{"channel":"book","type":"update","data":[{"symbol":"A/B","bids":[],"asks":[]},{"symbol":"C/D","bids":[{"price":"1.0","qty":"2"}],"asks":[]}]}"#,
        r#"{"type":"update","channel":"book","data":[{"symbol":"A/B","bids":[],"asks":[],"timestamp":"2023-02-30T00:00:00Z"}]}"#,
    ];

    fn both(frame: &[u8]) -> (String, String) {
        (
            format!("{:?}", classify(frame, 1 << 20)),
            format!("{:?}", classify_general(frame, 1 << 20)),
        )
    }

    #[test]
    fn fast_path_takes_kraken_frames() {
        for frame in FAST_FRAMES {
            assert!(
                fast::envelope(frame, &mut Scratch::default()).is_some(),
                "{frame}"
            );
        }
        // not its subset: the serde path decides
        for frame in [
            r#"{"data":[],"channel":"book","type":"update"}"#,
            r#"{"channel":"book","type":"update","data":[],"req_id":1}"#,
            r#"{"channel":"book","type":"update","data":[{"symbol":"A\/B","bids":[],"asks":[]}]}"#,
            r#"{"channel":"book","type":"update","data":[{"symbol":"A","bids":[],"asks":[],"checksum":null}]}"#,
            r#"{"channel":"book","type":"update","data":[{"symbol":"A","bids":[{"price":01,"qty":1}],"asks":[]}]}"#,
            r#"{"channel":"book","channel":"book","type":"update","data":[]}"#,
            r#"{"channel":"book","type":"update","data":[]} x"#,
        ] {
            assert!(
                fast::envelope(frame, &mut Scratch::default()).is_none(),
                "{frame}"
            );
        }
    }

    #[test]
    fn fast_path_equals_serde_path() {
        // every frame, and every one-byte deletion, insertion and replacement of it by bytes
        // that matter to JSON: the same frame or reject (reason and detail) either way
        const BYTES: &[u8] = b" \t\n\"\\,:{}[]0123456789-+.eEx\x01\xc3";
        for frame in FAST_FRAMES {
            let frame = frame.as_bytes().to_vec();
            let (fast, general) = both(&frame);
            assert_eq!(fast, general);
            for i in 0..=frame.len() {
                let mut deleted = frame.clone();
                if i < frame.len() {
                    deleted.remove(i);
                    let (fast, general) = both(&deleted);
                    assert_eq!(fast, general, "{}", String::from_utf8_lossy(&deleted));
                }
                for &b in BYTES {
                    let mut inserted = frame.clone();
                    inserted.insert(i, b);
                    let (fast, general) = both(&inserted);
                    assert_eq!(fast, general, "{}", String::from_utf8_lossy(&inserted));
                    if i < frame.len() {
                        let mut replaced = frame.clone();
                        replaced[i] = b;
                        let (fast, general) = both(&replaced);
                        assert_eq!(fast, general, "{}", String::from_utf8_lossy(&replaced));
                    }
                }
            }
        }
    }

    #[test]
    fn short_plain_tokens_parse_as_long_ones() {
        // the unchecked loop for tokens of at most 18 bytes agrees with the checked one
        let mut tokens: Vec<String> = Vec::new();
        for body in [
            "",
            "0",
            "1",
            "09",
            "123456789012345678",
            "99999999999999999",
        ] {
            for cut in 0..=body.len() {
                let (a, b) = body.split_at(cut);
                tokens.push(format!("{a}.{b}"));
                tokens.push(format!("{a}{b}"));
                tokens.push(format!("{a}..{b}"));
                tokens.push(format!("{a}x{b}"));
                tokens.push(format!("{a}/{b}"));
                tokens.push(format!("{a}:{b}"));
            }
        }
        for t in &tokens {
            if t.len() <= 18 {
                assert_eq!(
                    plain_decimal(t.as_bytes()),
                    plain_decimal_long(t.as_bytes()),
                    "{t}"
                );
            }
        }
    }

    #[test]
    fn exponent_tokens() {
        let d = |t: &str| token_decimal(t.as_bytes());
        assert_eq!(
            d("1E-8"),
            Ok(Decimal {
                mantissa: 1,
                scale: 8
            })
        );
        assert_eq!(
            d("1.50e+2"),
            Ok(Decimal {
                mantissa: 150,
                scale: 0
            })
        );
        assert_eq!(
            d("1.5E3"),
            Ok(Decimal {
                mantissa: 1500,
                scale: 0
            })
        );
        assert_eq!(
            d("2.5e-1"),
            Ok(Decimal {
                mantissa: 25,
                scale: 2
            })
        );
        assert!(d("1E-99").is_err());
        assert!(d("1E+99").is_err());
        assert!(d("1E").is_err());
        assert!(d("1E+-1").is_err());
        assert!(d("-1E2").is_err());
    }

    #[test]
    fn timestamps() {
        let ns = |t: &str| rfc3339_ns(t.as_bytes());
        assert_eq!(ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            ns("2023-10-06T17:35:00.279389650Z"),
            Some(1_696_613_700_279_389_650)
        );
        assert_eq!(
            ns("2023-10-06T17:35:00.2Z"),
            Some(1_696_613_700_200_000_000)
        );
        assert_eq!(
            ns("2023-10-06 17:35:00+00:00"),
            Some(1_696_613_700_000_000_000)
        );
        assert_eq!(ns("2024-02-29T00:00:00Z"), Some(1_709_164_800_000_000_000));
        assert_eq!(ns("2023-02-29T00:00:00Z"), None);
        assert_eq!(ns("2023-10-06T24:00:00Z"), None);
        assert_eq!(ns("2023-10-06T17:35:00.Z"), None);
        assert_eq!(ns("2023-10-06T17:35:00.1234567890Z"), None);
        assert_eq!(ns("2023-10-06T17:35:00+01:00"), None);
        assert_eq!(ns("1969-12-31T23:59:59Z"), None);
        assert_eq!(ns("9999-12-31T23:59:59Z"), None); // beyond int64 ns
        assert_eq!(ns("2262-04-11T23:47:16.854775807Z"), Some(i64::MAX));
        assert_eq!(ns("２０２３-10-06T17:35:00Z"), None);
    }

    #[test]
    fn memoised_timestamps_equal_fresh_ones() {
        let texts = [
            "2023-10-06T17:35:00.279389650Z",
            "2023-10-06T17:35:00.2Z",
            "2023-10-06T17:35:00.Z",
            "2023-10-06T17:35:00",
            "2023-10-06T17:35:00+01:00",
            "2023-10-06T17:35:01Z",
            "2023-02-29T00:00:00Z",
            "2023-02-29T00:00:00.5Z",
            "2024-02-29T00:00:00.5Z",
            "1969-12-31T23:59:59Z",
            "1969-12-31T23:59:59.1Z",
            "2262-04-11T23:47:16.854775807Z",
            "2262-04-11T23:47:16.854775808Z",
            "2023-10-06T17:35:00.279389650Z",
            "2023-10-06 17:35:00.279389650Z",
        ];
        let mut memo = TimeMemo::default();
        for _ in 0..3 {
            for t in texts {
                assert_eq!(
                    rfc3339_ns_memo(t.as_bytes(), &mut memo),
                    rfc3339_ns(t.as_bytes())
                );
            }
        }
    }
}
