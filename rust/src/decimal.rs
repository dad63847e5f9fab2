//! Exact decimal tokens as Kraken sends them, and the digits Kraken's checksum hashes.
//!
//! A price or quantity token (`"0.00010000"`, `"45283.5"`, `42`) is parsed to a
//! [`Decimal`]: an `i64` mantissa and the number of decimals the token was written with, so
//! `0.250` is `(250, 3)` and `0.25` is `(25, 2)`. Nothing ever goes through a float. Books
//! then work in *units*: the value scaled to the pair's precision ([`Decimal::to_units`]),
//! whose decimal digits are exactly the piece Kraken's CRC32 hashes ([`push_digits`]).
//!
//! The parser accepts only the plain form `digits[.digits]`; signs, exponents (`1E-8`),
//! empty parts (`.5`, `1.`), non-ASCII digits and tokens longer than [`MAX_TOKEN_LEN`] bytes
//! are rejected with a [`NumberError`] saying why (the Python reference, `to_units`, still
//! handles exponent spellings on the paths that need them).

use std::fmt;

/// Longest token accepted, in bytes (38 significant digits, a dot and a sign, as in Python).
pub const MAX_TOKEN_LEN: usize = 40;
/// Largest supported precision or token scale (decimals).
pub const MAX_SCALE: u8 = 18;

/// Powers of ten that fit an `i64`: `POW10[i] == 10^i` for `i <= 18`.
const POW10: [i64; 19] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
];

/// Why a token is not an exact, supported decimal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberError {
    /// The token is empty.
    Empty,
    /// The token is longer than [`MAX_TOKEN_LEN`] bytes.
    TooLong(usize),
    /// The token starts with a minus sign.
    Negative,
    /// The token is in exponent notation (`1E-8`).
    Exponent,
    /// Anything else that is not `digits[.digits]`.
    Malformed,
    /// The value does not fit an `i64` mantissa or units.
    OutOfRange,
    /// The token has more decimals than [`MAX_SCALE`].
    ScaleTooLarge(usize),
    /// A precision outside `0..=MAX_SCALE` was asked for.
    BadPrecision(u8),
    /// A non-zero digit beyond the pair's precision.
    TooManyDecimals { scale: u8, precision: u8 },
}

impl fmt::Display for NumberError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberError::Empty => write!(f, "empty number token"),
            NumberError::TooLong(n) => {
                write!(f, "number token of {n} bytes (at most {MAX_TOKEN_LEN})")
            }
            NumberError::Negative => write!(f, "negative number"),
            NumberError::Exponent => write!(f, "exponent notation is not supported"),
            NumberError::Malformed => write!(f, "malformed number"),
            NumberError::OutOfRange => write!(f, "number out of range"),
            NumberError::ScaleTooLarge(n) => {
                write!(f, "{n} decimals (at most {MAX_SCALE})")
            }
            NumberError::BadPrecision(p) => {
                write!(f, "precision {p} outside 0..={MAX_SCALE}")
            }
            NumberError::TooManyDecimals { scale, precision } => write!(
                f,
                "non-zero digit beyond the precision: {scale} decimals, precision {precision}"
            ),
        }
    }
}

impl std::error::Error for NumberError {}

/// An exact non-negative decimal: `mantissa * 10^-scale`, as written (trailing zeros kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    /// The digits of the token without the dot (leading zeros dropped by the value).
    pub mantissa: i64,
    /// Number of decimals the token was written with.
    pub scale: u8,
}

impl Decimal {
    /// The value scaled to `precision` decimals, as an exact `i64`.
    ///
    /// Trailing zeros beyond the precision are accepted (`"0.250"` at precision 2 is 25); a
    /// non-zero digit beyond it is [`NumberError::TooManyDecimals`].
    pub fn to_units(self, precision: u8) -> Result<i64, NumberError> {
        if precision > MAX_SCALE {
            return Err(NumberError::BadPrecision(precision));
        }
        let (scale, mantissa) = (self.scale, self.mantissa);
        if scale <= precision {
            let factor = POW10[usize::from(precision - scale)];
            mantissa.checked_mul(factor).ok_or(NumberError::OutOfRange)
        } else {
            let divisor = POW10[usize::from(scale - precision)];
            if mantissa % divisor != 0 {
                return Err(NumberError::TooManyDecimals { scale, precision });
            }
            Ok(mantissa / divisor)
        }
    }
}

/// Parse a plain decimal token (`digits[.digits]`) exactly.
pub fn parse_decimal(token: &[u8]) -> Result<Decimal, NumberError> {
    if token.is_empty() {
        return Err(NumberError::Empty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(NumberError::TooLong(token.len()));
    }
    if token[0] == b'-' {
        return Err(NumberError::Negative);
    }
    if token.iter().any(|&c| c == b'e' || c == b'E') {
        return Err(NumberError::Exponent);
    }
    let (whole, frac) = match token.iter().position(|&c| c == b'.') {
        Some(dot) => (&token[..dot], Some(&token[dot + 1..])),
        None => (token, None),
    };
    if whole.is_empty() || frac.is_some_and(<[u8]>::is_empty) {
        return Err(NumberError::Malformed);
    }
    let frac = frac.unwrap_or(&[]);
    if frac.len() > usize::from(MAX_SCALE) {
        // checked before the digits so "1.0000000000000000000" says why it is refused
        if whole.iter().chain(frac).all(u8::is_ascii_digit) {
            return Err(NumberError::ScaleTooLarge(frac.len()));
        }
        return Err(NumberError::Malformed);
    }
    let mut mantissa: i64 = 0;
    for &c in whole.iter().chain(frac) {
        if !c.is_ascii_digit() {
            return Err(NumberError::Malformed);
        }
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(i64::from(c - b'0')))
            .ok_or(NumberError::OutOfRange)?;
    }
    // frac.len() <= MAX_SCALE (18) fits a u8
    let scale = u8::try_from(frac.len()).map_err(|_| NumberError::ScaleTooLarge(frac.len()))?;
    Ok(Decimal { mantissa, scale })
}

/// Parse a token and scale it to `precision` decimals (see [`Decimal::to_units`]).
pub fn token_units(token: &[u8], precision: u8) -> Result<i64, NumberError> {
    parse_decimal(token)?.to_units(precision)
}

/// Units of `text` if it is exactly how a value is rendered at `precision` decimals (the
/// Python reference's `units_to_text`: `"0.00100000"`, `"45283.5"`, `"42"`), else None.
///
/// Canonical means: ASCII digits, exactly `precision` decimals after one dot (no dot when
/// the precision is 0), no leading zero in the whole part unless it is `0`, no sign. Used to
/// compare checkpoints, stored as text, with a book held in units.
pub fn canonical_units(text: &[u8], precision: u8) -> Option<i64> {
    if precision > MAX_SCALE {
        return None;
    }
    let p = usize::from(precision);
    let (whole, frac): (&[u8], &[u8]) = if p == 0 {
        (text, &[])
    } else {
        let dot = text.len().checked_sub(p + 1)?;
        if text.get(dot) != Some(&b'.') {
            return None;
        }
        (&text[..dot], &text[dot + 1..])
    };
    if whole.is_empty() || (whole.len() > 1 && whole[0] == b'0') {
        return None;
    }
    let mut units: i64 = 0;
    for &c in whole.iter().chain(frac) {
        if !c.is_ascii_digit() {
            return None;
        }
        units = units.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(units)
}

/// Append the decimal digits of `value` (no sign, no leading zeros; nothing for 0).
///
/// This is Kraken's checksum piece of a value held in units: `"0.00100000"` at precision 8 is
/// 100000 units and hashes as `100000`. Books only hold values > 0; a 0 contributes nothing,
/// like the Python reference's `checksum_piece`.
#[inline]
pub fn push_digits(out: &mut Vec<u8>, value: u64) {
    if value == 0 {
        return;
    }
    // digits written two at a time into the front of a fixed buffer, which is appended whole
    // and cut back: a constant-size copy the compiler inlines (a variable-size one is a libc
    // call, which profiling showed dominating the checksum text)
    let n = value.ilog10() as usize + 1; // 1..=20
    let mut buf = [0u8; 20];
    let mut end = n;
    let mut v = value;
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        end -= 2;
        buf[end] = DIGIT_PAIRS[pair];
        buf[end + 1] = DIGIT_PAIRS[pair + 1];
    }
    if v >= 10 {
        let pair = v as usize * 2;
        buf[0] = DIGIT_PAIRS[pair];
        buf[1] = DIGIT_PAIRS[pair + 1];
    } else {
        buf[0] = b'0' + v as u8;
    }
    let len = out.len();
    out.extend_from_slice(&buf);
    out.truncate(len + n);
}

/// Write the digits of `value` (nothing for 0) into `out` at `at` (at most 20 of them, so
/// `at <= 20` always fits); returns the end.
#[inline]
fn write_digits(out: &mut [u8; 40], at: usize, value: u64) -> usize {
    if value == 0 || at > 20 {
        return at;
    }
    let n = value.ilog10() as usize + 1; // 1..=20
    let mut end = at + n;
    let mut v = value;
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        end -= 2;
        out[end] = DIGIT_PAIRS[pair];
        out[end + 1] = DIGIT_PAIRS[pair + 1];
    }
    if v >= 10 {
        let pair = v as usize * 2;
        out[at] = DIGIT_PAIRS[pair];
        out[at + 1] = DIGIT_PAIRS[pair + 1];
    } else {
        out[at] = b'0' + v as u8;
    }
    at + n
}

/// The checksum text of one level (or order): the digits of `price` then of `qty`, both > 0
/// and at most 19 digits (an `i64`), kept inline so a book can cache one per level and build
/// its checksum text with fixed-size copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    len: u8,
    bytes: [u8; 40],
}

impl Piece {
    /// The piece of a level or order of `price` and `qty` units.
    pub fn new(price: i64, qty: i64) -> Piece {
        let mut bytes = [0u8; 40];
        let n = write_digits(&mut bytes, 0, price.unsigned_abs());
        let len = write_digits(&mut bytes, n, qty.unsigned_abs());
        Piece {
            len: len as u8,
            bytes,
        }
    }

    /// No digits (a placeholder).
    pub const EMPTY: Piece = Piece {
        len: 0,
        bytes: [0u8; 40],
    };

    /// Bytes a piece may take, [`Piece::write_at`] writes them all.
    pub const CAPACITY: usize = 40;

    /// Write the piece at `out[at..]` (all [`Piece::CAPACITY`] bytes, a constant-size copy;
    /// those after the piece are scratch); returns the end of the piece. Writes nothing and
    /// returns `at` when `out` has no room.
    #[inline]
    pub fn write_at(&self, out: &mut [u8], at: usize) -> usize {
        match out.get_mut(at..at + Piece::CAPACITY) {
            Some(dst) => {
                dst.copy_from_slice(&self.bytes);
                at + usize::from(self.len)
            }
            None => at,
        }
    }

    /// Append the piece to `out`.
    #[inline]
    pub fn push_to(&self, out: &mut Vec<u8>) {
        let len = out.len();
        out.extend_from_slice(&self.bytes);
        out.truncate(len + usize::from(self.len));
    }

    /// The piece's text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// `"00" "01" ... "99"`: two digits per entry.
const DIGIT_PAIRS: [u8; 200] = {
    let mut table = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        table[2 * i] = b'0' + (i / 10) as u8;
        table[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    table
};

/// The checksum piece of a token written at its own scale: the digits of its mantissa.
/// `"0.250"` gives `250` and `"0.25"` gives `25`: the two hash differently.
pub fn token_piece(token: &[u8]) -> Result<Vec<u8>, NumberError> {
    let dec = parse_decimal(token)?;
    let mut out = Vec::with_capacity(20);
    push_digits(&mut out, dec.mantissa.unsigned_abs());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(token: &str) -> Decimal {
        parse_decimal(token.as_bytes()).unwrap()
    }

    #[test]
    fn parses_plain_tokens_exactly() {
        assert_eq!(
            dec("45283.5"),
            Decimal {
                mantissa: 452835,
                scale: 1
            }
        );
        assert_eq!(
            dec("0.00100000"),
            Decimal {
                mantissa: 100000,
                scale: 8
            }
        );
        assert_eq!(
            dec("42"),
            Decimal {
                mantissa: 42,
                scale: 0
            }
        );
        assert_eq!(
            dec("007.50"),
            Decimal {
                mantissa: 750,
                scale: 2
            }
        );
        assert_eq!(
            dec("0"),
            Decimal {
                mantissa: 0,
                scale: 0
            }
        );
        assert_eq!(
            dec("0.0"),
            Decimal {
                mantissa: 0,
                scale: 1
            }
        );
        assert_eq!(
            dec("9223372036854775807"),
            Decimal {
                mantissa: i64::MAX,
                scale: 0
            }
        );
        assert_eq!(
            dec("0.000000000000000001"),
            Decimal {
                mantissa: 1,
                scale: 18
            }
        );
    }

    #[test]
    fn rejects_what_is_not_plain() {
        let err = |t: &str| parse_decimal(t.as_bytes()).unwrap_err();
        assert_eq!(err(""), NumberError::Empty);
        assert_eq!(err("-1.5"), NumberError::Negative);
        assert_eq!(err("1E-8"), NumberError::Exponent);
        assert_eq!(err("1e5"), NumberError::Exponent);
        assert_eq!(err("+1"), NumberError::Malformed);
        assert_eq!(err(".5"), NumberError::Malformed);
        assert_eq!(err("1."), NumberError::Malformed);
        assert_eq!(err("1.2.3"), NumberError::Malformed);
        assert_eq!(err("1,5"), NumberError::Malformed);
        assert_eq!(err(" 1"), NumberError::Malformed);
        assert_eq!(err("١"), NumberError::Malformed); // Arabic-Indic digit one
        assert_eq!(err("NaN"), NumberError::Malformed);
        assert_eq!(err("9223372036854775808"), NumberError::OutOfRange);
        assert_eq!(err("0.0000000000000000001"), NumberError::ScaleTooLarge(19));
        let long = "1".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(err(&long), NumberError::TooLong(MAX_TOKEN_LEN + 1));
        // leading zeros are fine up to the length limit
        let padded = format!("{}1", "0".repeat(MAX_TOKEN_LEN - 1));
        assert_eq!(dec(&padded).mantissa, 1);
    }

    #[test]
    fn units_at_a_precision() {
        assert_eq!(dec("0.001").to_units(8), Ok(100000));
        assert_eq!(dec("0.250").to_units(3), Ok(250));
        assert_eq!(dec("0.25").to_units(3), Ok(250));
        assert_eq!(dec("0.250").to_units(2), Ok(25)); // trailing zero beyond precision
        assert_eq!(
            dec("0.251").to_units(2),
            Err(NumberError::TooManyDecimals {
                scale: 3,
                precision: 2
            })
        );
        assert_eq!(dec("42").to_units(0), Ok(42));
        assert_eq!(dec("0").to_units(10), Ok(0));
        assert_eq!(dec("92233720368").to_units(9), Err(NumberError::OutOfRange));
        assert_eq!(dec("1").to_units(19), Err(NumberError::BadPrecision(19)));
    }

    #[test]
    fn trailing_zero_tokens_hash_differently_at_their_own_scale() {
        assert_eq!(token_piece(b"0.250").unwrap(), b"250");
        assert_eq!(token_piece(b"0.25").unwrap(), b"25");
        assert_eq!(token_piece(b"0.00125386").unwrap(), b"125386");
        assert_eq!(token_piece(b"105944.20").unwrap(), b"10594420");
        let crc = |b: &[u8]| crc32fast::hash(b);
        assert_ne!(
            crc(&token_piece(b"0.250").unwrap()),
            crc(&token_piece(b"0.25").unwrap())
        );
    }

    #[test]
    fn canonical_text_only() {
        let c = |t: &str, p| canonical_units(t.as_bytes(), p);
        assert_eq!(c("0.00100000", 8), Some(100_000));
        assert_eq!(c("45283.5", 1), Some(452_835));
        assert_eq!(c("42", 0), Some(42));
        assert_eq!(c("0", 0), Some(0));
        assert_eq!(c("0.00", 2), Some(0));
        assert_eq!(c("0.001", 8), None); // trimmed
        assert_eq!(c("0.0010000000", 8), None); // padded
        assert_eq!(c("00.5", 1), None); // leading zero
        assert_eq!(c("05", 0), None);
        assert_eq!(c("-1.5", 1), None);
        assert_eq!(c("+1.5", 1), None);
        assert_eq!(c("1.5", 0), None);
        assert_eq!(c("15", 1), None);
        assert_eq!(c(".5", 1), None);
        assert_eq!(c("1e5", 0), None);
        assert_eq!(c("", 0), None);
        assert_eq!(c("1.5", 19), None);
        assert_eq!(c("9223372036854775807", 0), Some(i64::MAX));
        assert_eq!(c("9223372036854775808", 0), None);
    }

    #[test]
    fn pieces_are_price_then_qty_digits() {
        assert_eq!(Piece::new(452835, 10_000_000).as_bytes(), b"45283510000000");
        let max = Piece::new(i64::MAX, i64::MAX);
        assert_eq!(
            max.as_bytes(),
            format!("{}{}", i64::MAX, i64::MAX).as_bytes()
        );
        let mut out = b"x".to_vec();
        Piece::new(1, 2).push_to(&mut out);
        max.push_to(&mut out);
        assert_eq!(out, format!("x12{}{}", i64::MAX, i64::MAX).into_bytes());
    }

    #[test]
    fn zero_contributes_no_digits() {
        let mut out = Vec::new();
        push_digits(&mut out, 0);
        assert!(out.is_empty());
        assert_eq!(token_piece(b"0.00000000").unwrap(), b"");
        push_digits(&mut out, 1_000_000);
        push_digits(&mut out, u64::MAX);
        assert_eq!(out, b"100000018446744073709551615");
    }

    #[test]
    fn digits_match_std_formatting() {
        for v in [
            1u64,
            9,
            10,
            99,
            100,
            12345,
            999_999_999_999,
            i64::MAX as u64,
        ] {
            let mut out = Vec::new();
            push_digits(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }
}
