//! Binding of `book_at`'s replays: `book_at_replay(...)` ([`crate::bookat`], spot) and
//! `futures_book_at_replay(...)` ([`crate::futures_bookat`]).

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{column, column_error};
use crate::bookat::{self, CheckpointOrder, MessageRows, Progress, Refusal};
use crate::decimal::MAX_SCALE;
use crate::futures_bookat;
use crate::l3::OrderState;

/// `(level, price, qty)` of an L2 answer.
type LevelRow = (i64, i64, i64);
/// `(level, queue, order handle, price, qty, ts_ns, qty ahead)` of an L3 answer.
type OrderRow = (i64, i64, u32, i64, i64, Option<i64>, i64);
/// An L3 checkpoint order as given: `(handle, price text, qty text, ts_ns)`.
type CheckpointItem = (i64, String, String, Option<i64>);

fn message_rows(py: Python<'_>, level3: bool, d: &Bound<'_, PyDict>) -> PyResult<MessageRows> {
    Ok(MessageRows {
        side: column(py, d, "side")?,
        event: column(py, d, "event")?,
        price: column(py, d, "price")?,
        qty: column(py, d, "qty")?,
        price_scale: column(py, d, "price_scale")?,
        qty_scale: column(py, d, "qty_scale")?,
        checksum: column(py, d, "checksum")?,
        checksum_valid: column(py, d, "checksum_valid")?,
        recv_ns: column(py, d, "recv_ns")?,
        ts_ns: column(py, d, "ts_ns")?,
        ts_valid: column(py, d, "ts_valid")?,
        order: if level3 {
            column(py, d, "order")?
        } else {
            Vec::new()
        },
    })
}

fn scale(value: i64) -> Option<u8> {
    u8::try_from(value).ok().filter(|&s| s <= MAX_SCALE)
}

/// `{"refused": reason}`; inconsistent inputs (a caller bug, never data) raise `ColumnError`.
fn refused<'py>(py: Python<'py>, why: &Refusal) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let text = match why {
        Refusal::Book(e) => format!("book refuses a message: {e}"),
        Refusal::Number => "a value does not convert exactly to the book's precision".to_owned(),
        Refusal::Checkpoint(why) => format!("checkpoint not valid: {why}"),
        Refusal::Input(why) => return Err(column_error(py, why.clone())),
    };
    out.set_item("refused", text)?;
    Ok(out)
}

fn progress<'py>(
    py: Python<'py>,
    p: &Progress,
    ready: bool,
    checksum: u32,
    depth: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("ready", ready)?;
    out.set_item("checksum", checksum)?;
    out.set_item("depth", depth)?;
    out.set_item("messages", p.messages)?;
    out.set_item("skipped", p.skipped)?;
    out.set_item("skipped_checksum", p.skipped_checksum)?;
    out.set_item("skipped_recv", p.skipped_recv)?;
    out.set_item("last_recv", p.last_recv)?;
    out.set_item("last_ts", p.last_ts)?;
    out.set_item("exchange_checksum", p.exchange_checksum)?;
    Ok(out)
}

/// The book of one epoch at a cut (the core of `BookEngine.book_at`, `recorder/query/books.py`).
///
/// `rows`: a dict of 1-d buffers (the epoch's rows from the checkpoint to the cut, wire
/// order): `side`, `event` (int8), `price`, `qty` (int64 units at `price_scale`/`qty_scale`,
/// int8), `checksum` (uint32) and `checksum_valid` (uint8), `recv_ns`, `ts_ns` (int64) and
/// `ts_valid` (uint8); level3 adds `order` (int64 handles below `n_orders`).
/// `checkpoint`: None, or `{"bids": ..., "asks": ...}` in canonical text at the precisions,
/// best first: `(price, qty)` pairs (book) or `(handle, price, qty, ts_ns)` (level3).
///
/// Returns `{"refused": reason}` when the reference model must answer (a message the book
/// refuses, an inexact value, a checkpoint its validation refuses), else the replay's
/// `ready`, `checksum`, `depth`, `messages`, `skipped`, `skipped_checksum`, `last_recv`,
/// `last_ts`, `exchange_checksum` and every level (`bids`/`asks`: `(level, price, qty)`) or
/// order (`(level, queue, handle, price, qty, ts_ns, qty_ahead)`), best first. The replay
/// runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (channel, depth, price_precision, qty_precision, rows, checkpoint=None,
                    skip_first=false, n_orders=0))]
#[allow(clippy::too_many_arguments)]
pub(super) fn book_at_replay<'py>(
    py: Python<'py>,
    channel: &str,
    depth: i64,
    price_precision: i64,
    qty_precision: i64,
    rows: &Bound<'py, PyDict>,
    checkpoint: Option<&Bound<'py, PyDict>>,
    skip_first: bool,
    n_orders: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let level3 = match channel {
        "book" => false,
        "level3" => true,
        other => return Err(column_error(py, format!("unknown book channel {other:?}"))),
    };
    let (Some(pp), Some(qp), Ok(depth)) = (
        scale(price_precision),
        scale(qty_precision),
        usize::try_from(depth),
    ) else {
        return refused(py, &Refusal::Number);
    };
    if depth < 1 {
        return refused(py, &Refusal::Checkpoint("depth below 1"));
    }
    let rows = message_rows(py, level3, rows)?;
    let side = |name: &str| -> PyResult<Option<Bound<'py, PyAny>>> {
        match checkpoint {
            None => Ok(None),
            Some(d) => d
                .get_item(name)?
                .map(Some)
                .ok_or_else(|| column_error(py, format!("checkpoint without {name:?}"))),
        }
    };
    let (bids, asks) = (side("bids")?, side("asks")?);
    if level3 {
        let n_orders = u32::try_from(n_orders)
            .map_err(|_| column_error(py, "n_orders outside 0..2**32".to_owned()))?;
        // a dictionary of the rows' and the checkpoint's ids has at most one entry per item:
        // this bounds the handle index by the input's size
        let items = rows.side.len()
            + [&bids, &asks]
                .iter()
                .filter_map(|s| s.as_ref().and_then(|s| s.len().ok()))
                .sum::<usize>();
        if n_orders as usize > items.max(1) {
            return Err(column_error(
                py,
                format!("n_orders {n_orders} exceeds the {items} rows and orders"),
            ));
        }
        let start = match (bids, asks) {
            (Some(b), Some(a)) => {
                let conv = |items: Vec<CheckpointItem>| -> Vec<CheckpointOrder> {
                    items
                        .into_iter()
                        .map(|(order, price, qty, ts)| CheckpointOrder {
                            order,
                            price: price.into_bytes(),
                            qty: qty.into_bytes(),
                            ts,
                        })
                        .collect()
                };
                let shape = |_| {
                    column_error(
                        py,
                        "checkpoint orders must be (int, str, str, int | None)".to_owned(),
                    )
                };
                Some((
                    conv(b.extract().map_err(shape)?),
                    conv(a.extract().map_err(shape)?),
                ))
            }
            _ => None,
        };
        let answer = py.detach(move || {
            let start = match start {
                None => None,
                Some((b, a)) => {
                    let mut seen = vec![false; n_orders as usize];
                    let b = bookat::checkpoint_orders(&b, false, depth, pp, qp, &mut seen)?;
                    let a = bookat::checkpoint_orders(&a, true, depth, pp, qp, &mut seen)?;
                    Some((b, a))
                }
            };
            let (mut book, p) =
                bookat::l3_book_at(depth, pp, qp, n_orders, start, &rows, skip_first)?;
            let checksum = book.checksum();
            let queues = |ask: bool| -> Result<Vec<OrderRow>, Refusal> {
                let orders = bookat::queued_orders(&book, ask, None).ok_or(Refusal::Number)?;
                Ok(orders
                    .into_iter()
                    .map(|q| {
                        let OrderState {
                            order,
                            price,
                            qty,
                            ts,
                        } = q.state;
                        (q.level, q.queue, order, price, qty, ts, q.ahead)
                    })
                    .collect())
            };
            let (b, a) = (queues(false)?, queues(true)?);
            Ok::<_, Refusal>((p, book.ready(), checksum, book.depth(), b, a))
        });
        return match answer {
            Err(why) => refused(py, &why),
            Ok((p, ready, checksum, depth, b, a)) => {
                let out = progress(py, &p, ready, checksum, depth)?;
                out.set_item("bids", b)?;
                out.set_item("asks", a)?;
                Ok(out)
            }
        };
    }
    let start = match (bids, asks) {
        (Some(b), Some(a)) => {
            let shape =
                |_| column_error(py, "checkpoint levels must be (str, str) pairs".to_owned());
            let b: Vec<(String, String)> = b.extract().map_err(shape)?;
            let a: Vec<(String, String)> = a.extract().map_err(shape)?;
            let bytes = |v: Vec<(String, String)>| -> Vec<(Vec<u8>, Vec<u8>)> {
                v.into_iter()
                    .map(|(p, q)| (p.into_bytes(), q.into_bytes()))
                    .collect()
            };
            Some((bytes(b), bytes(a)))
        }
        _ => None,
    };
    let answer = py.detach(move || {
        let start = match start {
            None => None,
            Some((b, a)) => Some((
                bookat::checkpoint_levels(&b, false, depth, pp, qp)?,
                bookat::checkpoint_levels(&a, true, depth, pp, qp)?,
            )),
        };
        let (mut book, p) = bookat::l2_book_at(depth, pp, qp, start, &rows, skip_first)?;
        let checksum = book.checksum();
        let levels = |ask: bool| -> Vec<LevelRow> {
            book.levels(ask)
                .enumerate()
                .map(|(i, (price, qty))| (i as i64 + 1, price, qty))
                .collect()
        };
        let (b, a) = (levels(false), levels(true));
        Ok::<_, Refusal>((p, book.ready(), checksum, book.depth(), b, a))
    });
    match answer {
        Err(why) => refused(py, &why),
        Ok((p, ready, checksum, depth, b, a)) => {
            let out = progress(py, &p, ready, checksum, depth)?;
            out.set_item("bids", b)?;
            out.set_item("asks", a)?;
            Ok(out)
        }
    }
}

/// A Futures checkpoint as given: `(seq, bids, asks)`, levels as plain-text `(price, qty)`.
type FuturesCheckpointArg = (Option<i64>, Vec<(String, String)>, Vec<(String, String)>);

/// The Futures book of one epoch at a cut (the core of `BookEngine._futures_book_at`,
/// `recorder/query/books.py`; see [`crate::futures_bookat`]).
///
/// `rows`: a dict of 1-d buffers, the epoch's `futures_book` rows from the checkpoint (or the
/// epoch start) to the cut in wire order: `event`, `side`, `price_scale`, `qty_scale` (int8),
/// `seq`, `price`, `qty` (int64; rows whose units overflowed are the caller's to refuse).
/// `checkpoint`: None or `(seq, bids, asks)`. `depth`: levels per side (None: all).
///
/// Returns `{"refused": reason}` when the reference model must answer, else `ready`, `seq`,
/// `messages`, `last_row` (index of the last delta replayed, or None) and `bids`/`asks` as
/// `(price, qty)` texts, best first. The replay runs with the GIL released.
#[pyfunction]
#[pyo3(signature = (rows, checkpoint=None, depth=None))]
pub(super) fn futures_book_at_replay<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyDict>,
    checkpoint: Option<FuturesCheckpointArg>,
    depth: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let event: Vec<i8> = column(py, rows, "event")?;
    let side: Vec<i8> = column(py, rows, "side")?;
    let price_scale: Vec<i8> = column(py, rows, "price_scale")?;
    let qty_scale: Vec<i8> = column(py, rows, "qty_scale")?;
    let seq: Vec<i64> = column(py, rows, "seq")?;
    let price: Vec<i64> = column(py, rows, "price")?;
    let qty: Vec<i64> = column(py, rows, "qty")?;
    let cp = checkpoint.map(|(seq, bids, asks)| futures_bookat::Checkpoint { seq, bids, asks });
    let answer = py.detach(move || {
        let rows = futures_bookat::Rows {
            event: &event,
            seq: &seq,
            side: &side,
            price: &price,
            qty: &qty,
            price_scale: &price_scale,
            qty_scale: &qty_scale,
        };
        futures_bookat::replay(cp.as_ref(), rows, depth.unwrap_or(usize::MAX))
    });
    let out = PyDict::new(py);
    match answer {
        Err(futures_bookat::Refused(why)) => out.set_item("refused", why)?,
        Ok(r) => {
            out.set_item("ready", r.ready)?;
            out.set_item("seq", r.seq)?;
            out.set_item("messages", r.messages)?;
            out.set_item("last_row", r.last_row)?;
            out.set_item("bids", r.bids)?;
            out.set_item("asks", r.asks)?;
        }
    }
    Ok(out)
}
