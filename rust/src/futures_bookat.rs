//! `book_at` of a Futures book: an epoch's checkpoint plus its `futures_book` rows up to a cut.
//!
//! [`replay`] rebuilds what `BookEngine._futures_book_at` (`recorder/query/books.py`, with the
//! reference book `recorder/book/futures.py`) rebuilds from the same rows, in the same order:
//!
//! * with a checkpoint, its levels and `seq`; rows at or below that `seq` are already in it;
//! * without one, the epoch's snapshot rows (`event == 0`; zero quantities left out) become the
//!   book when the first delta arrives (or at the end);
//! * each delta is checked against the book's `seq` like `FuturesBook.apply_level`: the next
//!   `seq` or a jump applies the absolute quantity (0 removes the level), a repeated or older
//!   `seq` is counted as replayed but not applied.
//!
//! Levels are ordered by their exact value ([`NumKey`]), whatever their scale, and keep the text
//! they were given. Whatever the reference would refuse (a negative quantity, a value without an
//! exact key, a delta before any snapshot `seq`, a scale outside `0..=18`) is a [`Refused`] with
//! the reason, and the caller answers with the reference model, which raises its own error.

use std::collections::BTreeMap;

use crate::decimal::MAX_SCALE;
use crate::fixbook::units_text;
use crate::futures::{NumKey, text_token_key};

/// The epoch's rows from the checkpoint (or the epoch start) to the cut, in wire order
/// (`futures_book` columns; `price`/`qty` in units at `price_scale`/`qty_scale`).
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub event: &'a [i8],
    pub seq: &'a [i64],
    pub side: &'a [i8],
    pub price: &'a [i64],
    pub qty: &'a [i64],
    pub price_scale: &'a [i8],
    pub qty_scale: &'a [i8],
}

/// `(price, qty)` texts of one side, best first.
pub type Levels = Vec<(String, String)>;

/// A checkpoint's book: `seq` and `(price, qty)` texts per side (plain decimal text).
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    pub seq: Option<i64>,
    pub bids: Levels,
    pub asks: Levels,
}

/// The rebuilt book.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// `(price, qty)` texts, best first, at most `depth` per side.
    pub bids: Levels,
    pub asks: Levels,
    /// The book's `seq` (None when no snapshot `seq` was ever known).
    pub seq: Option<i64>,
    /// Messages replayed (a book built from snapshot rows counts as one).
    pub messages: usize,
    /// Row index of the last delta replayed.
    pub last_row: Option<usize>,
    /// False when no snapshot was applied before the cut (no book).
    pub ready: bool,
}

/// Why the reference model must answer instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

type Side = BTreeMap<NumKey, (String, String)>;

struct Book {
    bids: Side,
    asks: Side,
    seq: Option<i64>,
}

/// The exact key of a price and whether `qty` removes the level (`FuturesBook._key` and
/// `_is_zero`: a negative quantity or a value without an exact key is refused).
fn level_keys(price: &str, qty: &str) -> Result<(NumKey, bool), Refused> {
    let key = text_token_key(price).ok_or_else(|| Refused(format!("price {price:?}")))?;
    let q = text_token_key(qty).ok_or_else(|| Refused(format!("quantity {qty:?}")))?;
    if q.is_negative() {
        return Err(Refused(format!("negative quantity {qty:?}")));
    }
    Ok((key, q.is_zero()))
}

impl Book {
    /// `FuturesBook.restore`: every level must have a non-zero quantity.
    fn restore(
        seq: Option<i64>,
        bids: &[(String, String)],
        asks: &[(String, String)],
    ) -> Result<Book, Refused> {
        let mut book = Book {
            bids: Side::new(),
            asks: Side::new(),
            seq,
        };
        for (side, levels) in [(&mut book.bids, bids), (&mut book.asks, asks)] {
            for (price, qty) in levels {
                let (key, zero) = level_keys(price, qty)?;
                if zero {
                    return Err(Refused("checkpoint holds an empty level".to_owned()));
                }
                side.insert(key, (price.clone(), qty.clone()));
            }
        }
        Ok(book)
    }

    /// `FuturesBook.apply_level`.
    fn apply(&mut self, ask: bool, price: String, qty: String, seq: i64) -> Result<(), Refused> {
        let Some(last) = self.seq else {
            return Err(Refused("book delta before any snapshot".to_owned()));
        };
        let (key, remove) = level_keys(&price, &qty)?;
        if seq <= last {
            return Ok(()); // a duplicate or a regression: reported by the pipeline, not applied
        }
        let side = if ask { &mut self.asks } else { &mut self.bids };
        if remove {
            side.remove(&key);
        } else {
            side.insert(key, (price, qty));
        }
        self.seq = Some(seq);
        Ok(())
    }

    fn levels(&self, depth: usize) -> (Levels, Levels) {
        (
            self.bids.values().rev().take(depth).cloned().collect(),
            self.asks.values().take(depth).cloned().collect(),
        )
    }
}

fn text(units: i64, scale: i8) -> Result<String, Refused> {
    match u8::try_from(scale) {
        Ok(s) if s <= MAX_SCALE => Ok(units_text(i128::from(units), s)),
        _ => Err(Refused(format!("scale {scale} outside 0..={MAX_SCALE}"))),
    }
}

/// Rebuild the book at the end of `rows` (see the module docs); `depth`: levels per side.
pub fn replay(
    checkpoint: Option<&Checkpoint>,
    rows: Rows<'_>,
    depth: usize,
) -> Result<Replayed, Refused> {
    let n = rows.event.len();
    for len in [
        rows.seq.len(),
        rows.side.len(),
        rows.price.len(),
        rows.qty.len(),
        rows.price_scale.len(),
        rows.qty_scale.len(),
    ] {
        if len != n {
            return Err(Refused("columns of different lengths".to_owned()));
        }
    }
    let mut out = Replayed::default();
    let (mut book, after) = match checkpoint {
        Some(cp) => (Some(Book::restore(cp.seq, &cp.bids, &cp.asks)?), cp.seq),
        None => (None, None),
    };
    let mut snap_bids: Levels = Vec::new();
    let mut snap_asks: Levels = Vec::new();
    let mut snap_seq: Option<i64> = None;
    for i in 0..n {
        let price = text(rows.price[i], rows.price_scale[i])?;
        let qty = text(rows.qty[i], rows.qty_scale[i])?;
        let seq = rows.seq[i];
        let ask = rows.side[i] != 0;
        if rows.event[i] == 0 {
            if book.is_none() && rows.qty[i] != 0 {
                if ask { &mut snap_asks } else { &mut snap_bids }.push((price, qty));
            }
            snap_seq = Some(seq);
            continue;
        }
        let b = match book.as_mut() {
            Some(b) => b,
            None => {
                out.messages += 1;
                book.insert(Book::restore(snap_seq, &snap_bids, &snap_asks)?)
            }
        };
        if after.is_some_and(|a| seq <= a) {
            continue; // already in the checkpoint
        }
        b.apply(ask, price, qty, seq)?;
        out.messages += 1;
        out.last_row = Some(i);
    }
    if book.is_none() && snap_seq.is_some() {
        book = Some(Book::restore(snap_seq, &snap_bids, &snap_asks)?);
        out.messages += 1;
    }
    if let Some(b) = book {
        (out.bids, out.asks) = b.levels(depth);
        out.seq = b.seq;
        out.ready = true;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table {
        event: Vec<i8>,
        seq: Vec<i64>,
        side: Vec<i8>,
        price: Vec<i64>,
        qty: Vec<i64>,
        price_scale: Vec<i8>,
        qty_scale: Vec<i8>,
    }

    impl Table {
        fn new(rows: &[(i8, i64, i8, i64, i8, i64, i8)]) -> Table {
            Table {
                event: rows.iter().map(|r| r.0).collect(),
                seq: rows.iter().map(|r| r.1).collect(),
                side: rows.iter().map(|r| r.2).collect(),
                price: rows.iter().map(|r| r.3).collect(),
                price_scale: rows.iter().map(|r| r.4).collect(),
                qty: rows.iter().map(|r| r.5).collect(),
                qty_scale: rows.iter().map(|r| r.6).collect(),
            }
        }

        fn rows(&self) -> Rows<'_> {
            Rows {
                event: &self.event,
                seq: &self.seq,
                side: &self.side,
                price: &self.price,
                qty: &self.qty,
                price_scale: &self.price_scale,
                qty_scale: &self.qty_scale,
            }
        }
    }

    fn pairs(levels: &[(&str, &str)]) -> Vec<(String, String)> {
        levels
            .iter()
            .map(|(p, q)| ((*p).to_owned(), (*q).to_owned()))
            .collect()
    }

    #[test]
    fn snapshot_rows_then_deltas_in_exact_value_order() {
        // snapshot: bids 100.0 x 1, 99.5 x 2 (and a zero level left out); ask 101 x 3
        let t = Table::new(&[
            (0, 10, 0, 1000, 1, 1, 0),
            (0, 10, 0, 995, 1, 2, 0),
            (0, 10, 0, 980, 1, 0, 0),
            (0, 10, 1, 101, 0, 3, 0),
            (1, 11, 0, 9975, 2, 5, 0),  // 99.75 sits between 100.0 and 99.5
            (1, 12, 0, 1000, 1, 0, 0),  // removes 100.0
            (1, 12, 1, 1005, 1, 7, 0),  // a repeated seq: counted, not applied
            (1, 11, 1, 1005, 1, 7, 0),  // a regression: counted, not applied
            (1, 15, 1, 10050, 2, 4, 0), // a jump applies
        ]);
        let r = replay(None, t.rows(), 100).unwrap();
        assert!(r.ready);
        assert_eq!(r.bids, pairs(&[("99.75", "5"), ("99.5", "2")]));
        assert_eq!(r.asks, pairs(&[("100.50", "4"), ("101", "3")]));
        assert_eq!(r.seq, Some(15));
        assert_eq!(r.messages, 6); // the snapshot book + 5 deltas
        assert_eq!(r.last_row, Some(8));
    }

    #[test]
    fn checkpoint_skips_rows_it_holds_and_depth_cuts() {
        let cp = Checkpoint {
            seq: Some(20),
            bids: pairs(&[("10", "1"), ("9", "1"), ("8", "1")]),
            asks: pairs(&[("11", "1")]),
        };
        let t = Table::new(&[
            (1, 19, 0, 10, 0, 0, 0), // already in the checkpoint
            (1, 20, 0, 9, 0, 0, 0),  // already in the checkpoint
            (1, 21, 0, 8, 0, 0, 0),
        ]);
        let r = replay(Some(&cp), t.rows(), 1).unwrap();
        assert_eq!(r.bids, pairs(&[("10", "1")]));
        assert_eq!(r.asks, pairs(&[("11", "1")]));
        assert_eq!(r.messages, 1);
        assert_eq!(r.seq, Some(21));
    }

    #[test]
    fn only_snapshot_rows_make_a_book_at_the_end_and_nothing_makes_none() {
        let t = Table::new(&[(0, 5, 1, 7, 0, 2, 0)]);
        let r = replay(None, t.rows(), 10).unwrap();
        assert!(r.ready);
        assert_eq!((r.messages, r.seq, r.last_row), (1, Some(5), None));
        let empty = Table::new(&[]);
        let r = replay(None, empty.rows(), 10).unwrap();
        assert!(!r.ready);
        assert_eq!(r.messages, 0);
    }

    #[test]
    fn what_the_reference_refuses_is_refused() {
        let negative = Table::new(&[(0, 1, 0, 10, 0, 1, 0), (1, 2, 0, 10, 0, -1, 0)]);
        assert!(replay(None, negative.rows(), 10).is_err());
        let scale = Table::new(&[(1, 2, 0, 10, 19, 1, 0)]);
        assert!(replay(None, scale.rows(), 10).is_err());
        let before_snapshot = Table::new(&[(1, 2, 0, 10, 0, 1, 0)]);
        assert!(replay(None, before_snapshot.rows(), 10).is_err());
        let empty_level = Checkpoint {
            seq: Some(1),
            bids: pairs(&[("10", "0.000")]),
            asks: Vec::new(),
        };
        assert!(replay(Some(&empty_level), Table::new(&[]).rows(), 10).is_err());
        let ragged = Rows {
            event: &[1],
            seq: &[],
            side: &[],
            price: &[],
            qty: &[],
            price_scale: &[],
            qty_scale: &[],
        };
        assert!(replay(None, ragged, 10).is_err());
    }
}
