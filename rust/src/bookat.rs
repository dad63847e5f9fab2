//! `book_at`'s replay: a book restored from a checkpoint (or empty at an epoch's start), then
//! the epoch's rows up to the cut applied message by message (the kernel of
//! `recorder.query.books.BookEngine.book_at` on the compiled core).
//!
//! Same semantics as the reference replay in `recorder/query/books.py` (`_state_at` over
//! `_messages` and the pure-Python books):
//!
//! * rows are in wire order; a message ends at each row that carries a checksum, and the rows
//!   after the last such row form one trailing message without a checksum;
//! * a message is a snapshot when any of its rows has event 0; its rows are applied bids
//!   (side 0) first, then asks, each in row order;
//! * with `skip_first` (the book was restored from a checkpoint taken after the first message
//!   at its receive time) the first message is not applied: its checksum is reported so the
//!   caller can check the checkpoint against it;
//! * each row's value is exact units at the row's own scale; it is converted to the book's
//!   precision exactly (a value that does not fit, or has digits beyond the precision, is a
//!   [`Refusal::Number`]).
//!
//! Anything the reference model would refuse (a book error, a number that does not convert,
//! a checkpoint that is not valid) is a [`Refusal`]: the caller then answers with the
//! reference model, which raises the reference's error. The core never guesses.

use crate::decimal::{self, MAX_SCALE};
use crate::error::BookError;
use crate::l2::L2Book;
use crate::l3::{L3Book, L3Entry, OrderState};

/// A book's levels as `(bids, asks)` of `(price, qty)` units, best first.
pub type Levels = (Vec<(i64, i64)>, Vec<(i64, i64)>);
/// A book's orders as `(bids, asks)`, best level first, queue order.
pub type Orders = (Vec<OrderState>, Vec<OrderState>);

/// The columns of the rows to replay (one epoch, `checkpoint <= recv_ns <= cut`, wire order).
#[derive(Debug, Clone, Default)]
pub struct MessageRows {
    pub side: Vec<i8>,
    pub event: Vec<i8>,
    pub price: Vec<i64>,
    pub qty: Vec<i64>,
    pub price_scale: Vec<i8>,
    pub qty_scale: Vec<i8>,
    pub checksum: Vec<u32>,
    /// 1 on the rows that carry a checksum (the last row of each message).
    pub checksum_valid: Vec<u8>,
    pub recv_ns: Vec<i64>,
    pub ts_ns: Vec<i64>,
    pub ts_valid: Vec<u8>,
    /// level3 only: order handles (`0..n_orders`); empty for `book`.
    pub order: Vec<i64>,
}

/// A checkpoint's orders (level3), best level first, queue order, as canonical text.
#[derive(Debug, Clone)]
pub struct CheckpointOrder {
    pub order: i64,
    pub price: Vec<u8>,
    pub qty: Vec<u8>,
    pub ts: Option<i64>,
}

/// Why the core does not answer (the caller falls back to the reference model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A message the book refuses.
    Book(BookError),
    /// A value that does not convert exactly to the book's precision.
    Number,
    /// A checkpoint the reference's validation refuses (or that is not canonical text).
    Checkpoint(&'static str),
    /// Inconsistent inputs (a caller bug).
    Input(String),
}

/// What the replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Messages applied (the skipped first message is not counted).
    pub messages: i64,
    /// `skip_first`: whether a first message was skipped, and its checksum.
    pub skipped: bool,
    pub skipped_checksum: Option<u32>,
    pub skipped_recv: Option<i64>,
    /// Receive time and exchange time (latest row timestamp) of the last message seen
    /// (skipped or applied).
    pub last_recv: Option<i64>,
    pub last_ts: Option<i64>,
    /// The last checksum Kraken sent among the applied messages.
    pub exchange_checksum: Option<u32>,
}

fn check_len(name: &str, len: usize, n: usize) -> Result<(), Refusal> {
    if len == n {
        Ok(())
    } else {
        Err(Refusal::Input(format!(
            "column {name} has {len} rows, expected {n}"
        )))
    }
}

impl MessageRows {
    fn validate(&self, level3: bool, n_orders: u32) -> Result<(), Refusal> {
        let n = self.side.len();
        check_len("event", self.event.len(), n)?;
        check_len("price", self.price.len(), n)?;
        check_len("qty", self.qty.len(), n)?;
        check_len("price_scale", self.price_scale.len(), n)?;
        check_len("qty_scale", self.qty_scale.len(), n)?;
        check_len("checksum", self.checksum.len(), n)?;
        check_len("checksum_valid", self.checksum_valid.len(), n)?;
        check_len("recv_ns", self.recv_ns.len(), n)?;
        check_len("ts_ns", self.ts_ns.len(), n)?;
        check_len("ts_valid", self.ts_valid.len(), n)?;
        if level3 {
            check_len("order", self.order.len(), n)?;
            if let Some(bad) = self
                .order
                .iter()
                .find(|&&o| o < 0 || o >= i64::from(n_orders))
            {
                return Err(Refusal::Input(format!(
                    "order handle {bad} outside 0..{n_orders}"
                )));
            }
        }
        Ok(())
    }

    /// The message boundaries: `(first row, last row, checksum)`. A message ends at its row
    /// with a checksum, or where `recv_ns` changes (a message's rows share its frame's
    /// receive time; FIX messages carry no checksum).
    fn messages(&self) -> Vec<(usize, usize, Option<u32>)> {
        let mut out = Vec::new();
        let mut start = 0usize;
        for (i, (&valid, &ck)) in self.checksum_valid.iter().zip(&self.checksum).enumerate() {
            if valid != 0 {
                out.push((start, i, Some(ck)));
                start = i + 1;
            } else if self
                .recv_ns
                .get(i + 1)
                .is_some_and(|&next| next != self.recv_ns[i])
            {
                out.push((start, i, None));
                start = i + 1;
            }
        }
        if start < self.side.len() {
            out.push((start, self.side.len() - 1, None));
        }
        out
    }

    fn is_snapshot(&self, a: usize, b: usize) -> bool {
        self.event[a..=b].contains(&0)
    }

    fn ts_max(&self, a: usize, b: usize) -> Option<i64> {
        (a..=b)
            .filter(|&r| self.ts_valid[r] != 0)
            .map(|r| self.ts_ns[r])
            .max()
    }
}

/// `value` (units at `scale`) as units at `precision`, exactly.
fn rescale(value: i64, scale: i8, precision: u8) -> Result<i64, Refusal> {
    let scale = u8::try_from(scale)
        .ok()
        .filter(|&s| s <= MAX_SCALE)
        .ok_or(Refusal::Number)?;
    if scale == precision {
        return Ok(value);
    }
    if scale < precision {
        let factor = 10i64
            .checked_pow(u32::from(precision - scale))
            .ok_or(Refusal::Number)?;
        return value.checked_mul(factor).ok_or(Refusal::Number);
    }
    let factor = 10i64
        .checked_pow(u32::from(scale - precision))
        .ok_or(Refusal::Number)?;
    if value % factor != 0 {
        return Err(Refusal::Number); // digits beyond the book's precision
    }
    Ok(value / factor)
}

/// Price and qty of every row in the book's units.
fn units(rows: &MessageRows, pp: u8, qp: u8) -> Result<Vec<(i64, i64)>, Refusal> {
    (0..rows.side.len())
        .map(|r| {
            Ok((
                rescale(rows.price[r], rows.price_scale[r], pp)?,
                rescale(rows.qty[r], rows.qty_scale[r], qp)?,
            ))
        })
        .collect()
}

/// Walk the messages of `rows`, applying each with `apply(snapshot, first_row, last_row)`.
fn walk<F>(rows: &MessageRows, skip_first: bool, mut apply: F) -> Result<Progress, Refusal>
where
    F: FnMut(bool, usize, usize) -> Result<(), BookError>,
{
    let mut out = Progress::default();
    let mut skip = skip_first;
    for (a, b, ck) in rows.messages() {
        let (recv, ts) = (rows.recv_ns[b], rows.ts_max(a, b));
        if skip {
            skip = false;
            out.skipped = true;
            out.skipped_checksum = ck;
            out.skipped_recv = Some(recv);
        } else {
            apply(rows.is_snapshot(a, b), a, b).map_err(Refusal::Book)?;
            out.messages += 1;
            if ck.is_some() {
                out.exchange_checksum = ck;
            }
        }
        out.last_recv = Some(recv);
        out.last_ts = ts;
    }
    Ok(out)
}

/// Units of a checkpoint's canonical text at `precision` (validation as the reference's
/// `validate_l2`/`validate_l3`: positive values).
fn checkpoint_value(text: &[u8], precision: u8) -> Result<i64, Refusal> {
    match decimal::canonical_units(text, precision) {
        Some(v) if v > 0 => Ok(v),
        Some(_) => Err(Refusal::Checkpoint("non-positive value")),
        None => Err(Refusal::Checkpoint("value not in canonical form")),
    }
}

/// Parse and validate an L2 checkpoint side (best first, strictly ordered, at most `depth`).
pub fn checkpoint_levels(
    levels: &[(Vec<u8>, Vec<u8>)],
    ask: bool,
    depth: usize,
    pp: u8,
    qp: u8,
) -> Result<Vec<(i64, i64)>, Refusal> {
    if levels.len() > depth {
        return Err(Refusal::Checkpoint("more levels than the depth"));
    }
    let sign = if ask { 1 } else { -1 };
    let mut last: Option<i64> = None;
    let mut out = Vec::with_capacity(levels.len());
    for (price, qty) in levels {
        let (p, q) = (checkpoint_value(price, pp)?, checkpoint_value(qty, qp)?);
        let key = p * sign;
        if last.is_some_and(|l| key <= l) {
            return Err(Refusal::Checkpoint("levels not best-first"));
        }
        last = Some(key);
        out.push((p, q));
    }
    Ok(out)
}

/// Parse and validate an L3 checkpoint side (levels best first, orders of a level contiguous,
/// at most `depth` levels); `seen` marks handles across both sides (ids must be unique).
pub fn checkpoint_orders(
    orders: &[CheckpointOrder],
    ask: bool,
    depth: usize,
    pp: u8,
    qp: u8,
    seen: &mut [bool],
) -> Result<Vec<OrderState>, Refusal> {
    let sign = if ask { 1 } else { -1 };
    let mut last: Option<i64> = None;
    let mut levels = 0usize;
    let mut out = Vec::with_capacity(orders.len());
    for o in orders {
        let (p, q) = (
            checkpoint_value(&o.price, pp)?,
            checkpoint_value(&o.qty, qp)?,
        );
        let slot = usize::try_from(o.order)
            .ok()
            .and_then(|i| seen.get_mut(i))
            .ok_or_else(|| Refusal::Input(format!("order handle {} out of range", o.order)))?;
        if *slot {
            return Err(Refusal::Checkpoint("duplicate order id"));
        }
        *slot = true;
        let key = p * sign;
        if last != Some(key) {
            if last.is_some_and(|l| key < l) {
                return Err(Refusal::Checkpoint("levels not best-first"));
            }
            levels += 1;
            last = Some(key);
        }
        out.push(OrderState {
            order: u32::try_from(o.order).unwrap_or(u32::MAX),
            price: p,
            qty: q,
            ts: o.ts,
        });
    }
    if levels > depth {
        return Err(Refusal::Checkpoint("more levels than the depth"));
    }
    Ok(out)
}

/// The L2 book at the cut: `start` (a validated checkpoint's levels) or an empty book, then
/// `rows`. Returns the book (ready or not) and what the replay did.
pub fn l2_book_at(
    depth: usize,
    pp: u8,
    qp: u8,
    start: Option<Levels>,
    rows: &MessageRows,
    skip_first: bool,
) -> Result<(L2Book, Progress), Refusal> {
    rows.validate(false, 0)?;
    if pp > MAX_SCALE || qp > MAX_SCALE {
        return Err(Refusal::Number);
    }
    let mut book = L2Book::new(depth);
    if let Some((bids, asks)) = start {
        book.apply(true, bids, asks).map_err(Refusal::Book)?;
    }
    let values = units(rows, pp, qp)?;
    let progress = walk(rows, skip_first, |snapshot, a, b| {
        let level = |r: usize| values[r];
        let bids = (a..=b).filter(|&r| rows.side[r] == 0).map(level);
        let asks = (a..=b).filter(|&r| rows.side[r] != 0).map(level);
        book.apply(snapshot, bids, asks).map(|_| ())
    })?;
    Ok((book, progress))
}

/// The level3 book at the cut (see [`l2_book_at`]); handles are below `n_orders`.
pub fn l3_book_at(
    depth: usize,
    pp: u8,
    qp: u8,
    n_orders: u32,
    start: Option<Orders>,
    rows: &MessageRows,
    skip_first: bool,
) -> Result<(L3Book, Progress), Refusal> {
    rows.validate(true, n_orders)?;
    if pp > MAX_SCALE || qp > MAX_SCALE {
        return Err(Refusal::Number);
    }
    let mut book = L3Book::new(depth, n_orders);
    if let Some((bids, asks)) = start {
        let entry = |o: OrderState| L3Entry {
            event: 0,
            order: o.order,
            price: o.price,
            qty: o.qty,
            ts: o.ts,
        };
        book.apply(
            true,
            bids.into_iter().map(entry),
            asks.into_iter().map(entry),
        )
        .map_err(Refusal::Book)?;
    }
    let values = units(rows, pp, qp)?;
    let progress = walk(rows, skip_first, |snapshot, a, b| {
        let entry = |r: usize| L3Entry {
            event: i64::from(rows.event[r]),
            // validated: 0 <= order < n_orders (a u32)
            order: u32::try_from(rows.order[r]).unwrap_or(u32::MAX),
            price: values[r].0,
            qty: values[r].1,
            ts: (rows.ts_valid[r] != 0).then_some(rows.ts_ns[r]),
        };
        let bids = (a..=b).filter(|&r| rows.side[r] == 0).map(entry);
        let asks = (a..=b).filter(|&r| rows.side[r] != 0).map(entry);
        book.apply(snapshot, bids, asks).map(|_| ())
    })?;
    Ok((book, progress))
}

/// One resting order of an L3 answer: level (1 = best), queue position (1 = front), the
/// order, and the quantity ahead of it in its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedOrder {
    pub level: i64,
    pub queue: i64,
    pub state: OrderState,
    pub ahead: i64,
}

/// Orders of one side of `book`, best level first, queue order, for the `n` best levels
/// (all when None). `None` when a level's quantity ahead does not fit an `i64`.
pub fn queued_orders(book: &L3Book, ask: bool, n: Option<usize>) -> Option<Vec<QueuedOrder>> {
    let mut out = Vec::new();
    let (mut level, mut queue, mut ahead) = (0i64, 0i64, 0i64);
    let mut price: Option<i64> = None;
    for o in book.orders(ask) {
        if price != Some(o.price) {
            if n.is_some_and(|n| level >= i64::try_from(n).unwrap_or(i64::MAX)) {
                break;
            }
            price = Some(o.price);
            level += 1;
            queue = 0;
            ahead = 0;
        }
        queue += 1;
        out.push(QueuedOrder {
            level,
            queue,
            state: o,
            ahead,
        });
        ahead = ahead.checked_add(o.qty)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l3::{ADD, DELETE, MODIFY};

    /// Rows (side, event, price, qty, checksum, ts, order) at scale 1/1; a message's rows
    /// share one `recv_ns` (100, 101, ...), the next message starts after a checksum row.
    type Row = (i8, i8, i64, i64, Option<u32>, Option<i64>, i64);

    fn rows(raw: &[Row]) -> MessageRows {
        let mut out = MessageRows::default();
        let mut recv = 100;
        for &(side, event, price, qty, ck, ts, order) in raw {
            out.side.push(side);
            out.event.push(event);
            out.price.push(price);
            out.qty.push(qty);
            out.price_scale.push(1);
            out.qty_scale.push(1);
            out.checksum.push(ck.unwrap_or(0));
            out.checksum_valid.push(u8::from(ck.is_some()));
            out.recv_ns.push(recv);
            recv += i64::from(ck.is_some());
            out.ts_ns.push(ts.unwrap_or(0));
            out.ts_valid.push(u8::from(ts.is_some()));
            out.order.push(order);
        }
        out
    }

    fn crc(bids: &[(i64, i64)], asks: &[(i64, i64)]) -> u32 {
        let mut book = L2Book::new(10);
        book.apply(true, bids.to_vec(), asks.to_vec())
            .unwrap()
            .computed
    }

    #[test]
    fn l2_from_the_snapshot_with_a_trailing_message() {
        let r = rows(&[
            (1, 0, 11, 1, None, Some(5), 0),
            (0, 0, 10, 1, Some(7), Some(4), 0),
            (0, 1, 10, 2, Some(8), Some(9), 0),
            (0, 1, 9, 3, None, None, 0), // trailing rows: a message without checksum
        ]);
        let (mut book, p) = l2_book_at(10, 1, 1, None, &r, false).unwrap();
        assert_eq!(p.messages, 3);
        assert!(!p.skipped);
        assert_eq!(p.exchange_checksum, Some(8));
        assert_eq!((p.last_recv, p.last_ts), (Some(102), None));
        assert!(book.ready());
        let bids: Vec<_> = book.levels(false).collect();
        assert_eq!(bids, vec![(10, 2), (9, 3)]);
        assert_eq!(book.checksum(), crc(&[(10, 2), (9, 3)], &[(11, 1)]));
    }

    #[test]
    fn messages_without_checksums_end_where_recv_ns_changes() {
        // FIX rows: no checksum at all; each message is the rows of one receive time
        let mut r = rows(&[
            (0, 0, 10, 1, None, None, 0),
            (1, 0, 12, 1, None, None, 0),
            (0, 1, 11, 2, None, None, 0),
            (0, 1, 10, 0, None, None, 0),
        ]);
        r.recv_ns = vec![100, 100, 101, 101];
        assert_eq!(r.messages(), vec![(0, 1, None), (2, 3, None)]);
        let (book, p) = l2_book_at(10, 1, 1, None, &r, false).unwrap();
        assert_eq!(
            (p.messages, p.exchange_checksum, p.last_recv),
            (2, None, Some(101))
        );
        assert_eq!(book.levels(false).collect::<Vec<_>>(), vec![(11, 2)]);
        assert_eq!(book.levels(true).collect::<Vec<_>>(), vec![(12, 1)]);
    }

    #[test]
    fn l2_from_a_checkpoint_skips_its_message() {
        let r = rows(&[
            (0, 1, 10, 5, Some(42), Some(1), 0), // already in the checkpoint
            (0, 1, 10, 6, Some(43), Some(2), 0),
        ]);
        let start = Some((vec![(10, 5)], vec![(11, 1)]));
        let (book, p) = l2_book_at(10, 1, 1, start, &r, true).unwrap();
        assert!(p.skipped);
        assert_eq!(p.skipped_checksum, Some(42));
        assert_eq!(p.messages, 1);
        assert_eq!(
            (p.last_recv, p.last_ts, p.exchange_checksum),
            (Some(101), Some(2), Some(43))
        );
        assert_eq!(book.best_bid(), Some((10, 6)));
    }

    #[test]
    fn l2_rescales_rows_and_refuses_inexact_values() {
        let mut r = rows(&[
            (0, 0, 10, 1, None, None, 0),
            (1, 0, 12, 1, Some(1), None, 0),
        ]);
        r.price_scale[0] = 0; // 10 at scale 0 = 100 at scale 1
        r.qty_scale[1] = 2; // 1 at scale 2: not a whole unit at scale 1
        assert_eq!(
            l2_book_at(10, 1, 1, None, &r, false).unwrap_err(),
            Refusal::Number
        );
        r.qty[1] = 10;
        let (book, _) = l2_book_at(10, 1, 1, None, &r, false).unwrap();
        assert_eq!(book.best_bid(), Some((100, 1)));
        assert_eq!(book.best_ask(), Some((12, 1)));
    }

    #[test]
    fn l2_refusals() {
        let r = rows(&[(0, 1, 10, 1, Some(1), None, 0)]);
        assert_eq!(
            l2_book_at(10, 1, 1, None, &r, false).unwrap_err(),
            Refusal::Book(BookError::NoSnapshot)
        );
        let mut bad = r.clone();
        bad.qty.clear();
        assert!(matches!(
            l2_book_at(10, 1, 1, None, &bad, false),
            Err(Refusal::Input(_))
        ));
        // no rows and no checkpoint: an empty book that is not ready
        let (book, p) = l2_book_at(10, 1, 1, None, &rows(&[]), false).unwrap();
        assert!(!book.ready());
        assert_eq!(p, Progress::default());
    }

    #[test]
    fn checkpoint_validation_follows_the_reference() {
        let t = |p: &str, q: &str| (p.as_bytes().to_vec(), q.as_bytes().to_vec());
        let ok = checkpoint_levels(&[t("2.0", "1.5"), t("1.9", "1")], false, 2, 1, 1);
        assert_eq!(
            ok.unwrap_err(),
            Refusal::Checkpoint("value not in canonical form")
        );
        let ok = checkpoint_levels(&[t("2.0", "1.5"), t("1.9", "1.0")], false, 2, 1, 1);
        assert_eq!(ok.unwrap(), vec![(20, 15), (19, 10)]);
        let worse = checkpoint_levels(&[t("1.9", "1.5"), t("2.0", "1.0")], false, 2, 1, 1);
        assert!(worse.is_err());
        assert!(checkpoint_levels(&[t("1.9", "1.5"), t("2.0", "1.0")], true, 1, 1, 1).is_err());
        assert!(checkpoint_levels(&[t("1.9", "0.0")], true, 1, 1, 1).is_err());
        let o = |order, p: &str| CheckpointOrder {
            order,
            price: p.as_bytes().to_vec(),
            qty: b"1.0".to_vec(),
            ts: None,
        };
        let mut seen = vec![false; 4];
        let side = checkpoint_orders(
            &[o(0, "1.0"), o(1, "1.0"), o(2, "1.1")],
            true,
            2,
            1,
            1,
            &mut seen,
        );
        assert_eq!(side.unwrap().len(), 3);
        let mut seen = vec![false; 4];
        assert!(checkpoint_orders(&[o(0, "1.0"), o(0, "1.1")], true, 2, 1, 1, &mut seen).is_err());
        let mut seen = vec![false; 4];
        assert!(checkpoint_orders(&[o(0, "1.1"), o(1, "1.0")], true, 2, 1, 1, &mut seen).is_err());
        let mut seen = vec![false; 4];
        assert!(checkpoint_orders(&[o(0, "1.0"), o(1, "1.1")], true, 1, 1, 1, &mut seen).is_err());
    }

    #[test]
    fn l3_replay_and_queues() {
        let r = rows(&[
            (0, 0, 10, 1, None, Some(1), 0),
            (0, 0, 10, 2, None, Some(2), 1),
            (1, 0, 12, 4, Some(1), Some(3), 2),
            (0, ADD as i8, 11, 3, Some(2), Some(4), 3),
            (0, MODIFY as i8, 10, 5, None, Some(5), 0),
            (0, DELETE as i8, 10, 2, Some(3), Some(6), 1),
        ]);
        let (book, p) = l3_book_at(10, 1, 1, 4, None, &r, false).unwrap();
        assert_eq!(p.messages, 3);
        assert_eq!(p.last_ts, Some(6));
        let bids = queued_orders(&book, false, None).unwrap();
        let brief: Vec<_> = bids
            .iter()
            .map(|q| (q.level, q.queue, q.state.order, q.state.qty, q.ahead))
            .collect();
        assert_eq!(brief, vec![(1, 1, 3, 3, 0), (2, 1, 0, 5, 0)]);
        assert_eq!(queued_orders(&book, false, Some(1)).unwrap().len(), 1);
        // restored from a checkpoint: the same book
        let start = (
            vec![
                OrderState {
                    order: 0,
                    price: 10,
                    qty: 1,
                    ts: Some(1),
                },
                OrderState {
                    order: 1,
                    price: 10,
                    qty: 2,
                    ts: Some(2),
                },
            ],
            vec![OrderState {
                order: 2,
                price: 12,
                qty: 4,
                ts: Some(3),
            }],
        );
        let (again, p) = l3_book_at(10, 1, 1, 4, Some(start), &r, true).unwrap();
        assert_eq!(p.skipped_checksum, Some(1));
        assert!(again.orders(false).eq(book.orders(false)));
        assert!(again.orders(true).eq(book.orders(true)));
        let mut bad = r.clone();
        bad.order[0] = 4;
        assert!(matches!(
            l3_book_at(10, 1, 1, 4, None, &bad, false),
            Err(Refusal::Input(_))
        ));
    }
}
