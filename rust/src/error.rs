//! Why a book message cannot be applied. The Python binding maps these to
//! `recorder.protocol.errors.BookError` with the reference books' wording.

use std::fmt;

/// A book message that cannot be applied; the book is then invalid until the next snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookError {
    /// An update arrived before a valid snapshot (or after a failed message).
    NoSnapshot,
    /// An L2 level with a price `<= 0` or a quantity `< 0` (units).
    InvalidLevel { price: i64, qty: i64 },
    /// A level3 order with a price `<= 0` or a quantity `< 0` (units).
    InvalidOrder { order: u32, price: i64, qty: i64 },
    /// A level3 update entry whose event code is not 1 add, 2 modify or 3 delete.
    UnknownEvent(i64),
    /// A level3 order handle beyond the book's declared number of ids.
    OrderOutOfRange { order: u32, limit: u32 },
}

impl fmt::Display for BookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BookError::NoSnapshot => write!(f, "update without a valid snapshot"),
            BookError::InvalidLevel { price, qty } => {
                write!(f, "invalid level: price {price} units, qty {qty} units")
            }
            BookError::InvalidOrder { order, price, qty } => {
                write!(f, "invalid order #{order}: price {price}, qty {qty}")
            }
            BookError::UnknownEvent(event) => write!(f, "unknown level3 event {event}"),
            BookError::OrderOutOfRange { order, limit } => {
                write!(f, "order handle {order} out of range (limit {limit})")
            }
        }
    }
}

impl std::error::Error for BookError {}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary (reject
/// details and quoted tokens are clipped with it).
pub fn clip(text: &str, max: usize) -> &str {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}
