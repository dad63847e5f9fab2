//! The pure part of the pipeline's Spot v2 book lane (`recorder._core.SpotLane`, see
//! `python_lane.rs`): which decoded `book` / `level3` items the lane derives itself and their
//! numbers in units.
//!
//! The lane only takes what it can derive exactly as the reference model
//! (`recorder/pipeline/core.py`, `_l2` / `_l3` with `recorder/book/l2.py`, `l3.py`) does
//! without raising: *plain* tokens (`digits[.digits]`, ASCII, no sign, no exponent) with at
//! most the book's decimals, whose units fit an `i64`, and a price above 0. Anything else
//! (another spelling, an error the reference words itself, a number beyond `i64`) is left to
//! the reference, which writes the same rows by construction.

use crate::spot::{Level, Order, Token};

/// Kraken's `book` depths: a snapshot without an ack gets the smallest one holding it.
const KRAKEN_DEPTHS: [i64; 5] = [10, 25, 100, 500, 1000];
/// Largest precision a book takes (`recorder.protocol.numbers.MAX_PRECISION`).
pub const MAX_PRECISION: u8 = 18;

/// Decimals of a plain token (`digits[.digits]`), None for any other spelling.
pub fn plain_decimals(token: Token<'_>) -> Option<u8> {
    let t = token.0.as_bytes();
    let (whole, frac) = match t.iter().position(|&c| c == b'.') {
        Some(dot) => (&t[..dot], Some(&t[dot + 1..])),
        None => (t, None),
    };
    if whole.is_empty() || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    match frac {
        None => Some(0),
        Some(f) if !f.is_empty() && f.iter().all(u8::is_ascii_digit) => u8::try_from(f.len()).ok(),
        Some(_) => None,
    }
}

/// Units of a plain token at `precision` decimals, None when the token is not plain, has
/// more decimals than `precision` or its units do not fit an `i64`.
pub fn plain_units(token: Token<'_>, precision: u8) -> Option<i64> {
    let decimals = plain_decimals(token)?;
    if decimals > precision || precision > MAX_PRECISION {
        return None;
    }
    let mut value: i64 = 0;
    for &c in token.0.as_bytes() {
        if c != b'.' {
            value = value.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
        }
    }
    value.checked_mul(10i64.checked_pow(u32::from(precision - decimals))?)
}

/// The reference's `_l2_depth`: the ack's depth, else the smallest Kraken depth holding the
/// snapshot's larger side (at least 1 level), else that side's size.
pub fn l2_depth(ack: Option<i64>, bids: usize, asks: usize) -> i64 {
    if let Some(d) = ack.filter(|&d| d != 0) {
        return d;
    }
    let n = i64::try_from(bids.max(asks).max(1)).unwrap_or(i64::MAX);
    KRAKEN_DEPTHS.into_iter().find(|&d| n <= d).unwrap_or(n)
}

/// The most decimals among plain tokens (the reference's `_infer_precision`); None when a
/// token is not plain.
pub fn infer_precision<'a>(tokens: impl IntoIterator<Item = Token<'a>>) -> Option<u8> {
    let mut best = 0;
    for t in tokens {
        best = best.max(plain_decimals(t)?);
    }
    Some(best)
}

/// `(price, qty)` units of L2 levels into `out` (cleared first); false when a level is not
/// the lane's (see the module documentation).
pub fn l2_units(levels: &[Level<'_>], pp: u8, qp: u8, out: &mut Vec<(i64, i64)>) -> bool {
    out.clear();
    for lv in levels {
        match (plain_units(lv.price, pp), plain_units(lv.qty, qp)) {
            (Some(p), Some(q)) if p > 0 => out.push((p, q)),
            _ => return false,
        }
    }
    true
}

/// Level3 event codes of the `level3.event` column (`add`, `modify`, `delete`); the decoder's
/// codes are the same (0: no event, a snapshot's order).
pub const EVENTS: [i64; 3] = [1, 2, 3];

/// `(price, qty)` units of level3 orders into `out` (cleared first); false when an order is
/// not the lane's: a token as for [`l2_units`], or an update's event that is not `add`,
/// `modify` or `delete` (a snapshot's orders carry none).
pub fn l3_units(
    orders: &[Order<'_>],
    snapshot: bool,
    pp: u8,
    qp: u8,
    out: &mut Vec<(i64, i64)>,
) -> bool {
    out.clear();
    for o in orders {
        if !snapshot && !EVENTS.contains(&o.event) {
            return false;
        }
        if snapshot && o.event != 0 {
            return false;
        }
        match (plain_units(o.price, pp), plain_units(o.qty, qp)) {
            (Some(p), Some(q)) if p > 0 => out.push((p, q)),
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Token<'_> {
        Token(s)
    }

    #[test]
    fn plain_tokens_and_others() {
        assert_eq!(plain_decimals(t("0.00010000")), Some(8));
        assert_eq!(plain_decimals(t("42")), Some(0));
        for bad in [
            "", ".5", "5.", "-1", "1e-5", "1E5", "+1", "1.2.3", "١", " 1", "0x1",
        ] {
            assert_eq!(plain_decimals(t(bad)), None, "{bad}");
        }
        assert_eq!(plain_units(t("1.5"), 3), Some(1500));
        assert_eq!(plain_units(t("007.50"), 2), Some(750));
        assert_eq!(plain_units(t("1.50"), 1), None); // more decimals: the reference decides
        assert_eq!(plain_units(t("9223372036854775807"), 0), Some(i64::MAX));
        assert_eq!(plain_units(t("9223372036854775808"), 0), None);
        assert_eq!(plain_units(t("922337203685477580.8"), 2), None);
        assert_eq!(plain_units(t("1"), 19), None);
    }

    #[test]
    fn depths_and_precisions() {
        assert_eq!(l2_depth(Some(25), 3, 4), 25);
        assert_eq!(l2_depth(Some(0), 3, 4), 10);
        assert_eq!(l2_depth(None, 0, 0), 10);
        assert_eq!(l2_depth(None, 11, 2), 25);
        assert_eq!(l2_depth(None, 1001, 2), 1001);
        assert_eq!(l2_depth(Some(-3), 1, 1), -3);
        assert_eq!(infer_precision([t("1.25"), t("3"), t("0.1")]), Some(2));
        assert_eq!(infer_precision([]), Some(0));
        assert_eq!(infer_precision([t("1.25"), t("1e-3")]), None);
    }
}
