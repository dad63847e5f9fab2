//! The Python binding, `recorder._core`: a thin layer over the pure core.
//!
//! * `parse_decimal(token)`, `token_units(token, precision)`: exact token parsing.
//! * `L2Book`, `L3Book`: the books fed with Kraken tokens (the reference model's shape of
//!   input), for the pipeline and for differential tests against `recorder/book/`.
//! * `replay_channel(channel, rows, specs)`: the `recorder verify` kernel. Takes whole
//!   columns as buffers (numpy arrays; no per-row Python objects), replays with the GIL
//!   released and returns verdict columns as little-endian `bytes` (read with
//!   `numpy.frombuffer`).
//!
//! Every failure is a Python exception of the project's hierarchy
//! (`recorder.protocol.errors`): `NumberError` for tokens, `BookError` for messages a book
//! refuses, `ColumnError` for inconsistent columns. The core has no panicking path on any
//! input; there is no `unsafe` here.

use std::collections::HashMap;

use pyo3::buffer::{Element, PyBuffer};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyString, PyTuple, PyType};

use crate::decimal::{self, Decimal, MAX_SCALE, NumberError};
use crate::error::BookError;
use crate::l2::L2Book;
use crate::l3::{ADD, DELETE, L3Book, L3Entry, MODIFY};
use crate::replay::{self, Checkpoint, CheckpointBook, EpochSpec, L3Columns, Rows};

mod bookat;

/// An instance of the exception class `name` of `recorder.protocol.errors`.
pub(crate) fn project_error(py: Python<'_>, name: &str, message: String) -> PyErr {
    let class = py
        .import("recorder.protocol.errors")
        .and_then(|module| module.getattr(name))
        .and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, message),
        Err(err) => PyRuntimeError::new_err(format!(
            "recorder.protocol.errors.{name} unavailable ({err}): {message}"
        )),
    }
}

fn number_error(py: Python<'_>, err: &NumberError, token: &Bound<'_, PyAny>) -> PyErr {
    let shown: String = token
        .repr()
        .map(|r| r.to_string_lossy().chars().take(64).collect())
        .unwrap_or_else(|_| "?".to_owned());
    project_error(py, "NumberError", format!("{err}: {shown}"))
}

fn book_error(py: Python<'_>, message: String) -> PyErr {
    project_error(py, "BookError", message)
}

fn column_error(py: Python<'_>, message: String) -> PyErr {
    project_error(py, "ColumnError", message)
}

/// A token's exact decimal: `str`/`bytes` text or a non-negative `int` (never bool/float).
fn token_decimal(token: &Bound<'_, PyAny>) -> Result<Decimal, NumberError> {
    if let Ok(text) = token.cast::<PyString>() {
        return match text.to_str() {
            Ok(s) => decimal::parse_decimal(s.as_bytes()),
            Err(_) => Err(NumberError::Malformed), // lone surrogates
        };
    }
    if let Ok(raw) = token.cast::<PyBytes>() {
        return decimal::parse_decimal(raw.as_bytes());
    }
    if token.is_instance_of::<PyInt>() && !token.is_instance_of::<PyBool>() {
        let value: i64 = token.extract().map_err(|_| NumberError::OutOfRange)?;
        if value < 0 {
            return Err(NumberError::Negative);
        }
        return Ok(Decimal {
            mantissa: value,
            scale: 0,
        });
    }
    Err(NumberError::Malformed)
}

fn units(py: Python<'_>, token: &Bound<'_, PyAny>, precision: u8) -> PyResult<i64> {
    token_decimal(token)
        .and_then(|d| d.to_units(precision))
        .map_err(|e| number_error(py, &e, token))
}

fn precision_arg(py: Python<'_>, name: &str, value: i64) -> PyResult<u8> {
    u8::try_from(value)
        .ok()
        .filter(|&p| p <= MAX_SCALE)
        .ok_or_else(|| book_error(py, format!("{name} must be in 0..{MAX_SCALE}, got {value}")))
}

fn depth_arg(py: Python<'_>, depth: i64) -> PyResult<usize> {
    usize::try_from(depth)
        .ok()
        .filter(|&d| d >= 1)
        .ok_or_else(|| book_error(py, format!("depth must be a positive int, got {depth}")))
}

fn kind_arg(py: Python<'_>, kind: &str) -> PyResult<bool> {
    match kind {
        "snapshot" => Ok(true),
        "update" => Ok(false),
        other => Err(book_error(
            py,
            format!("unknown book message type {other:?}"),
        )),
    }
}

fn checksum_arg(py: Python<'_>, checksum: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    match checksum {
        None => Ok(None),
        Some(value) if value.is_none() => Ok(None),
        Some(value) if value.is_instance_of::<PyBool>() => {
            Err(book_error(py, "checksum must be an int".to_owned()))
        }
        Some(value) => value
            .extract::<i64>()
            .map(Some)
            .map_err(|_| book_error(py, "checksum must be an int in the int64 range".to_owned())),
    }
}

/// Parse a plain decimal token to `(mantissa, scale)`; raises `NumberError`.
#[pyfunction]
fn parse_decimal(py: Python<'_>, token: &Bound<'_, PyAny>) -> PyResult<(i64, u8)> {
    let d = token_decimal(token).map_err(|e| number_error(py, &e, token))?;
    Ok((d.mantissa, d.scale))
}

/// A token's value scaled to `precision` decimals; raises `NumberError`.
#[pyfunction]
fn token_units(py: Python<'_>, token: &Bound<'_, PyAny>, precision: i64) -> PyResult<i64> {
    let precision = u8::try_from(precision)
        .ok()
        .filter(|&p| p <= MAX_SCALE)
        .ok_or_else(|| {
            project_error(
                py,
                "NumberError",
                format!("precision {precision} outside 0..={MAX_SCALE}"),
            )
        })?;
    units(py, token, precision)
}

/// Kraken L2 book fed with tokens (see `recorder/book/l2.py`, the reference model).
#[pyclass(name = "L2Book", module = "recorder._core")]
struct PyL2Book {
    book: L2Book,
    pp: u8,
    qp: u8,
}

fn l2_levels(
    py: Python<'_>,
    levels: &Bound<'_, PyAny>,
    pp: u8,
    qp: u8,
) -> PyResult<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for item in levels.try_iter()? {
        let item = item?;
        let fields = fields(&item, 2)
            .ok_or_else(|| book_error(py, "a level must be a (price, qty) pair".to_owned()))?;
        out.push((units(py, &fields[0], pp)?, units(py, &fields[1], qp)?));
    }
    Ok(out)
}

/// The items of a tuple or list of exactly `n` items.
fn fields<'py>(item: &Bound<'py, PyAny>, n: usize) -> Option<Vec<Bound<'py, PyAny>>> {
    let items: Vec<Bound<'py, PyAny>> = if let Ok(t) = item.cast::<PyTuple>() {
        t.iter().collect()
    } else if let Ok(l) = item.cast::<PyList>() {
        l.iter().collect()
    } else {
        return None;
    };
    (items.len() == n).then_some(items)
}

type L2Verdict = (u32, Option<bool>, bool, u32, u32);

#[pymethods]
impl PyL2Book {
    #[new]
    fn new(py: Python<'_>, depth: i64, price_precision: i64, qty_precision: i64) -> PyResult<Self> {
        Ok(PyL2Book {
            book: L2Book::new(depth_arg(py, depth)?),
            pp: precision_arg(py, "price_precision", price_precision)?,
            qp: precision_arg(py, "qty_precision", qty_precision)?,
        })
    }

    /// Apply one message of `(price, qty)` token pairs; returns
    /// `(computed, match, crossed, absent_removals, truncated)` (`match` is None without a
    /// checksum). A refused message raises and leaves the book invalid until a snapshot.
    #[pyo3(signature = (kind, bids, asks, checksum=None))]
    fn apply(
        &mut self,
        py: Python<'_>,
        kind: &str,
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
        checksum: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<L2Verdict> {
        let snapshot = kind_arg(py, kind)?;
        let expected = checksum_arg(py, checksum)?;
        let parsed = l2_levels(py, bids, self.pp, self.qp)
            .and_then(|b| Ok((b, l2_levels(py, asks, self.pp, self.qp)?)));
        let (b, a) = parsed.inspect_err(|_| self.book.invalidate())?;
        self.finish(py, snapshot, b, a, expected)
    }

    /// `apply` for levels already in units at the book's precisions.
    #[pyo3(signature = (kind, bids, asks, checksum=None))]
    fn apply_units(
        &mut self,
        py: Python<'_>,
        kind: &str,
        bids: Vec<(i64, i64)>,
        asks: Vec<(i64, i64)>,
        checksum: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<L2Verdict> {
        let snapshot = kind_arg(py, kind)?;
        let expected = checksum_arg(py, checksum)?;
        self.finish(py, snapshot, bids, asks, expected)
    }

    /// Kraken CRC32 of the current book.
    fn checksum(&mut self) -> u32 {
        self.book.checksum()
    }

    fn best_bid(&self) -> Option<(i64, i64)> {
        self.book.best_bid()
    }

    fn best_ask(&self) -> Option<(i64, i64)> {
        self.book.best_ask()
    }

    /// The `n` best levels (all when None) of `"bid"` or `"ask"`.
    #[pyo3(signature = (side, n=None))]
    fn levels(&self, py: Python<'_>, side: &str, n: Option<usize>) -> PyResult<Vec<(i64, i64)>> {
        let ask = side_arg(py, side)?;
        Ok(self
            .book
            .levels(ask)
            .take(n.unwrap_or(usize::MAX))
            .collect())
    }

    #[getter]
    fn ready(&self) -> bool {
        self.book.ready()
    }

    #[getter]
    fn depth(&self) -> usize {
        self.book.depth()
    }
}

impl PyL2Book {
    fn finish(
        &mut self,
        py: Python<'_>,
        snapshot: bool,
        bids: Vec<(i64, i64)>,
        asks: Vec<(i64, i64)>,
        expected: Option<i64>,
    ) -> PyResult<L2Verdict> {
        let out = self
            .book
            .apply(snapshot, bids, asks)
            .map_err(|e| book_error(py, e.to_string()))?;
        let matched = expected.map(|e| e == i64::from(out.computed));
        Ok((
            out.computed,
            matched,
            out.crossed,
            out.absent_removals,
            out.truncated,
        ))
    }
}

fn side_arg(py: Python<'_>, side: &str) -> PyResult<bool> {
    match side {
        "ask" => Ok(true),
        "bid" => Ok(false),
        other => Err(book_error(
            py,
            format!("side must be 'bid' or 'ask', got {other:?}"),
        )),
    }
}

/// Kraken level3 book fed with tokens and Kraken order ids (see `recorder/book/l3.py`).
///
/// Order ids are interned to handles; the table is emptied at every snapshot, so it holds
/// the ids seen since the last one.
#[pyclass(name = "L3Book", module = "recorder._core")]
struct PyL3Book {
    book: L3Book,
    pp: u8,
    qp: u8,
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

/// `(order_id, price, qty, ts_ns)` of one resting order.
type OrderRow = (String, i64, i64, Option<i64>);

type L3Verdict = (u32, Option<bool>, bool, u32, u32, u32, u32, u32);

#[pymethods]
impl PyL3Book {
    #[new]
    fn new(py: Python<'_>, depth: i64, price_precision: i64, qty_precision: i64) -> PyResult<Self> {
        Ok(PyL3Book {
            book: L3Book::new(depth_arg(py, depth)?, u32::MAX - 1),
            pp: precision_arg(py, "price_precision", price_precision)?,
            qp: precision_arg(py, "qty_precision", qty_precision)?,
            ids: HashMap::new(),
            names: Vec::new(),
        })
    }

    /// Apply one message of `(event, order_id, limit_price, order_qty, ts_ns)` entries
    /// (`event` None/ignored in snapshots, else "add"/"modify"/"delete"); returns
    /// `(computed, match, crossed, requeued, duplicate_adds, unknown_modifies,
    /// unknown_deletes, truncated)`.
    #[pyo3(signature = (kind, bids, asks, checksum=None))]
    fn apply(
        &mut self,
        py: Python<'_>,
        kind: &str,
        bids: &Bound<'_, PyAny>,
        asks: &Bound<'_, PyAny>,
        checksum: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<L3Verdict> {
        let snapshot = kind_arg(py, kind)?;
        let expected = checksum_arg(py, checksum)?;
        if snapshot {
            self.book.reset(self.book_depth());
            self.ids.clear();
            self.names.clear();
        }
        let parsed = self
            .entries(py, snapshot, bids)
            .and_then(|b| Ok((b, self.entries(py, snapshot, asks)?)));
        let (b, a) = parsed.inspect_err(|_| self.book.invalidate())?;
        let out = self.book.apply(snapshot, b, a).map_err(|e| {
            let message = match e {
                BookError::InvalidOrder { order, price, qty } => format!(
                    "invalid order {}: price {price}, qty {qty}",
                    self.names.get(order as usize).map_or("?", String::as_str)
                ),
                other => other.to_string(),
            };
            book_error(py, message)
        })?;
        let matched = expected.map(|e| e == i64::from(out.computed));
        Ok((
            out.computed,
            matched,
            out.crossed,
            out.requeued,
            out.duplicate_adds,
            out.unknown_modifies,
            out.unknown_deletes,
            out.truncated,
        ))
    }

    fn checksum(&mut self) -> u32 {
        self.book.checksum()
    }

    /// `(price, total qty)` of the best bid level.
    fn best_bid(&self) -> Option<(i64, i128)> {
        self.book.best_bid()
    }

    /// `(price, total qty)` of the best ask level.
    fn best_ask(&self) -> Option<(i64, i128)> {
        self.book.best_ask()
    }

    /// Orders of one side as `(order_id, price, qty, ts_ns)`, best level first, queue order.
    fn orders(&self, py: Python<'_>, side: &str) -> PyResult<Vec<OrderRow>> {
        let ask = side_arg(py, side)?;
        Ok(self
            .book
            .orders(ask)
            .map(|o| {
                let name = self
                    .names
                    .get(o.order as usize)
                    .cloned()
                    .unwrap_or_default();
                (name, o.price, o.qty, o.ts)
            })
            .collect())
    }

    fn level_count(&self, py: Python<'_>, side: &str) -> PyResult<usize> {
        Ok(self.book.level_count(side_arg(py, side)?))
    }

    fn __len__(&self) -> usize {
        self.book.len()
    }

    #[getter]
    fn ready(&self) -> bool {
        self.book.ready()
    }
}

impl PyL3Book {
    fn book_depth(&self) -> usize {
        self.book.depth()
    }

    fn intern(&mut self, py: Python<'_>, id: String) -> PyResult<u32> {
        if let Some(&handle) = self.ids.get(&id) {
            return Ok(handle);
        }
        let handle = u32::try_from(self.names.len())
            .ok()
            .filter(|&h| h < u32::MAX - 1)
            .ok_or_else(|| book_error(py, "too many distinct order ids".to_owned()))?;
        self.ids.insert(id.clone(), handle);
        self.names.push(id);
        Ok(handle)
    }

    fn entries(
        &mut self,
        py: Python<'_>,
        snapshot: bool,
        entries: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<L3Entry>> {
        let mut out = Vec::new();
        for item in entries.try_iter()? {
            let item = item?;
            let shape = || {
                book_error(
                    py,
                    "an entry must be (event, order_id, limit_price, order_qty, ts_ns)".to_owned(),
                )
            };
            let f = fields(&item, 5).ok_or_else(shape)?;
            let event: Option<String> = f[0].extract().map_err(|_| shape())?;
            let order_id: String = f[1].extract().map_err(|_| shape())?;
            let ts: Option<i64> = f[4].extract().map_err(|_| shape())?;
            let (price, qty) = (&f[2], &f[3]);
            let event = if snapshot {
                0
            } else {
                match event.as_deref() {
                    Some("add") => ADD,
                    Some("modify") => MODIFY,
                    Some("delete") => DELETE,
                    other => {
                        return Err(book_error(py, format!("unknown level3 event {other:?}")));
                    }
                }
            };
            let (price, qty) = if event == DELETE {
                (0, 0) // a delete needs only the id, as in the reference model
            } else {
                (units(py, price, self.pp)?, units(py, qty, self.qp)?)
            };
            let order = self.intern(py, order_id)?;
            out.push(L3Entry {
                event,
                order,
                price,
                qty,
                ts,
            });
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------- batch replay

fn column<T: Element>(py: Python<'_>, dict: &Bound<'_, PyDict>, name: &str) -> PyResult<Vec<T>> {
    let value = dict
        .get_item(name)?
        .ok_or_else(|| column_error(py, format!("missing column {name:?}")))?;
    let buffer = PyBuffer::<T>::get(&value).map_err(|e| {
        column_error(
            py,
            format!(
                "column {name:?} is not a buffer of {}: {e}",
                std::any::type_name::<T>()
            ),
        )
    })?;
    if buffer.dimensions() != 1 {
        return Err(column_error(
            py,
            format!("column {name:?} is not one-dimensional"),
        ));
    }
    buffer
        .to_vec(py)
        .map_err(|e| column_error(py, format!("column {name:?}: {e}")))
}

fn int_item(py: Python<'_>, dict: &Bound<'_, PyDict>, name: &str) -> PyResult<i64> {
    dict.get_item(name)?
        .ok_or_else(|| column_error(py, format!("missing value {name:?}")))?
        .extract::<i64>()
        .map_err(|_| column_error(py, format!("{name:?} must be an int")))
}

fn rows_arg(py: Python<'_>, level3: bool, d: &Bound<'_, PyDict>) -> PyResult<Rows> {
    let l3 = if level3 {
        let n_orders = u32::try_from(int_item(py, d, "n_orders")?)
            .map_err(|_| column_error(py, "n_orders outside 0..2**32".to_owned()))?;
        Some(L3Columns {
            order: column(py, d, "order")?,
            ts_ns: column(py, d, "ts_ns")?,
            ts_valid: column(py, d, "ts_valid")?,
            n_orders,
        })
    } else {
        None
    };
    Ok(Rows {
        symbol: column(py, d, "symbol")?,
        epoch: column(py, d, "epoch")?,
        side: column(py, d, "side")?,
        event: column(py, d, "event")?,
        price: column(py, d, "price")?,
        qty: column(py, d, "qty")?,
        units_valid: column(py, d, "units_valid")?,
        price_scale: column(py, d, "price_scale")?,
        qty_scale: column(py, d, "qty_scale")?,
        checksum: column(py, d, "checksum")?,
        checksum_valid: column(py, d, "checksum_valid")?,
        recv_ns: column(py, d, "recv_ns")?,
        l3,
    })
}

/// `starts` must be non-decreasing offsets from 0 to `total` (one more than the items).
fn ranges(py: Python<'_>, name: &str, starts: &[i64], items: usize, total: usize) -> PyResult<()> {
    let ok = starts.len() == items + 1
        && starts.first() == Some(&0)
        && starts
            .last()
            .is_some_and(|&l| usize::try_from(l).is_ok_and(|l| l == total))
        && starts.windows(2).all(|w| w[0] <= w[1]);
    if ok {
        Ok(())
    } else {
        Err(column_error(
            py,
            format!("{name} is not a list of {items} ranges over {total} items"),
        ))
    }
}

fn specs_arg(
    py: Python<'_>,
    level3: bool,
    d: &Bound<'_, PyDict>,
) -> PyResult<(Vec<EpochSpec>, Vec<Checkpoint>)> {
    let spec_symbol: Vec<i32> = column(py, d, "spec_symbol")?;
    let spec_epoch: Vec<i64> = column(py, d, "spec_epoch")?;
    let spec_depth: Vec<i64> = column(py, d, "spec_depth")?;
    let spec_cp_start: Vec<i64> = column(py, d, "spec_cp_start")?;
    let cp_message: Vec<i64> = column(py, d, "cp_message")?;
    let cp_checksum: Vec<i64> = column(py, d, "cp_checksum")?;
    let cp_comparable: Vec<u8> = column(py, d, "cp_comparable")?;
    let cp_depth: Vec<i64> = column(py, d, "cp_depth")?;
    let cp_price_scale: Vec<i64> = column(py, d, "cp_price_scale")?;
    let cp_qty_scale: Vec<i64> = column(py, d, "cp_qty_scale")?;
    let cp_level_start: Vec<i64> = column(py, d, "cp_level_start")?;
    let lv_side: Vec<i8> = column(py, d, "lv_side")?;
    let lv_price = text_list(py, d, "lv_price_text")?;
    let lv_qty = text_list(py, d, "lv_qty_text")?;
    let (lv_order, lv_ts, lv_ts_valid): (Vec<i64>, Vec<i64>, Vec<u8>) = if level3 {
        (
            column(py, d, "lv_order")?,
            column(py, d, "lv_ts")?,
            column(py, d, "lv_ts_valid")?,
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    let n_specs = spec_symbol.len();
    let n_cps = cp_message.len();
    let n_levels = lv_side.len();
    let same = |name: &str, len: usize, n: usize| {
        if len == n {
            Ok(())
        } else {
            Err(column_error(
                py,
                format!("{name} has {len} items, expected {n}"),
            ))
        }
    };
    same("spec_epoch", spec_epoch.len(), n_specs)?;
    same("spec_depth", spec_depth.len(), n_specs)?;
    for (name, len) in [
        ("cp_checksum", cp_checksum.len()),
        ("cp_comparable", cp_comparable.len()),
        ("cp_depth", cp_depth.len()),
        ("cp_price_scale", cp_price_scale.len()),
        ("cp_qty_scale", cp_qty_scale.len()),
    ] {
        same(name, len, n_cps)?;
    }
    same("lv_price_text", lv_price.len(), n_levels)?;
    same("lv_qty_text", lv_qty.len(), n_levels)?;
    if level3 {
        same("lv_order", lv_order.len(), n_levels)?;
        same("lv_ts", lv_ts.len(), n_levels)?;
        same("lv_ts_valid", lv_ts_valid.len(), n_levels)?;
    }
    ranges(py, "spec_cp_start", &spec_cp_start, n_specs, n_cps)?;
    ranges(py, "cp_level_start", &cp_level_start, n_cps, n_levels)?;
    // validated above: every start is in 0..=len, non-decreasing
    let span = |starts: &[i64], i: usize| (starts[i] as usize)..(starts[i + 1] as usize);
    let mut checkpoints = Vec::with_capacity(n_cps);
    for c in 0..n_cps {
        let levels = span(&cp_level_start, c);
        let mut comparable = cp_comparable[c] != 0;
        // the checkpoint's texts must be exactly what a book renders at its precisions
        let (pp, qp) = (
            u8::try_from(cp_price_scale[c]).unwrap_or(u8::MAX),
            u8::try_from(cp_qty_scale[c]).unwrap_or(u8::MAX),
        );
        let values = |i: usize| -> PyResult<Option<(i64, i64)>> {
            let price = canonical_item(py, &lv_price, i, pp)?;
            let qty = canonical_item(py, &lv_qty, i, qp)?;
            Ok(price.zip(qty))
        };
        let book = if level3 {
            let (mut bids, mut asks) = (Vec::new(), Vec::new());
            for i in levels {
                if !comparable {
                    break;
                }
                let Some((price, qty)) = values(i)? else {
                    comparable = false; // not a rendering of any value at these precisions
                    break;
                };
                let Ok(order) = u32::try_from(lv_order[i]) else {
                    comparable = false; // an id the rows never had: cannot match
                    break;
                };
                let ts = (lv_ts_valid[i] != 0).then_some(lv_ts[i]);
                let state = crate::l3::OrderState {
                    order,
                    price,
                    qty,
                    ts,
                };
                if lv_side[i] == 0 {
                    bids.push(state)
                } else {
                    asks.push(state)
                }
            }
            CheckpointBook::L3 { bids, asks }
        } else {
            let (mut bids, mut asks) = (Vec::new(), Vec::new());
            for i in levels {
                if !comparable {
                    break;
                }
                let Some(level) = values(i)? else {
                    comparable = false; // not a rendering of any value at these precisions
                    break;
                };
                if lv_side[i] == 0 {
                    bids.push(level)
                } else {
                    asks.push(level)
                }
            }
            CheckpointBook::L2 { bids, asks }
        };
        checkpoints.push(Checkpoint {
            message: cp_message[c],
            checksum: u32::try_from(cp_checksum[c]).ok(),
            comparable,
            depth: cp_depth[c],
            price_scale: cp_price_scale[c],
            qty_scale: cp_qty_scale[c],
            book,
        });
    }
    let specs = (0..n_specs)
        .map(|s| EpochSpec {
            symbol: spec_symbol[s],
            epoch: spec_epoch[s],
            depth: spec_depth[s],
            checkpoints: span(&spec_cp_start, s).collect(),
        })
        .collect();
    Ok((specs, checkpoints))
}

/// A list of `str` from the dict (checkpoint texts).
fn text_list<'py>(
    py: Python<'py>,
    dict: &Bound<'py, PyDict>,
    name: &str,
) -> PyResult<Bound<'py, PyList>> {
    dict.get_item(name)?
        .ok_or_else(|| column_error(py, format!("missing column {name:?}")))?
        .cast_into::<PyList>()
        .map_err(|_| column_error(py, format!("column {name:?} must be a list of str")))
}

/// Units of the text at `i` when it is canonical at `precision`; a non-str item is an error.
fn canonical_item(
    py: Python<'_>,
    list: &Bound<'_, PyList>,
    i: usize,
    precision: u8,
) -> PyResult<Option<i64>> {
    let item = list.get_item(i)?;
    let text = item
        .cast::<PyString>()
        .map_err(|_| column_error(py, format!("checkpoint text #{i} is not a str")))?;
    Ok(match text.to_str() {
        Ok(t) => decimal::canonical_units(t.as_bytes(), precision),
        Err(_) => None, // lone surrogates: not a rendering of any value
    })
}

trait LeBytes: Copy {
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! le_bytes {
    ($($t:ty),*) => {$(
        impl LeBytes for $t {
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
le_bytes!(u8, i32, u32, i64);

fn as_bytes<'py, T: LeBytes>(py: Python<'py>, values: &[T]) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(values));
    for &v in values {
        v.put(&mut out);
    }
    PyBytes::new(py, &out)
}

/// Replay one channel's rows (`"book"` or `"level3"`) for `recorder verify`.
///
/// `rows` and `specs` are dicts of 1-d buffers (see `recorder/verify_core.py`, which builds
/// them from the archive). Returns a dict of little-endian `bytes` columns: groups
/// (`group_*`, `perm`), per-message verdicts (`msg_*`), refused messages (`err_*`) and
/// `cp_result`. The replay itself runs with the GIL released.
#[pyfunction]
fn replay_channel<'py>(
    py: Python<'py>,
    channel: &str,
    rows: &Bound<'py, PyDict>,
    specs: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let level3 = match channel {
        "book" => false,
        "level3" => true,
        other => return Err(column_error(py, format!("unknown book channel {other:?}"))),
    };
    let rows = rows_arg(py, level3, rows)?;
    let (specs, checkpoints) = specs_arg(py, level3, specs)?;
    let result = py
        .detach(move || replay::replay(&rows, &specs, &checkpoints))
        .map_err(|e| column_error(py, e.to_string()))?;
    let out = PyDict::new(py);
    out.set_item("perm", as_bytes(py, &result.perm))?;
    out.set_item("group_row_start", as_bytes(py, &result.group_row_start))?;
    out.set_item("group_symbol", as_bytes(py, &result.group_symbol))?;
    out.set_item("group_epoch", as_bytes(py, &result.group_epoch))?;
    out.set_item("group_status", as_bytes(py, &result.group_status))?;
    out.set_item("group_messages", as_bytes(py, &result.group_messages))?;
    out.set_item(
        "group_unverifiable",
        as_bytes(py, &result.group_unverifiable),
    )?;
    out.set_item("group_msg_start", as_bytes(py, &result.group_msg_start))?;
    out.set_item("msg_verdict", as_bytes(py, &result.msg_verdict))?;
    out.set_item("msg_expected", as_bytes(py, &result.msg_expected))?;
    out.set_item("msg_computed", as_bytes(py, &result.msg_computed))?;
    out.set_item("msg_recv", as_bytes(py, &result.msg_recv))?;
    out.set_item("cp_result", as_bytes(py, &result.checkpoint_result))?;
    let (mut index, mut kind, mut a, mut b, mut c) = (vec![], vec![], vec![], vec![], vec![]);
    for (message, err) in &result.errors {
        index.push(*message);
        let (k, x, y, z) = match *err {
            BookError::NoSnapshot => (1u8, 0, 0, 0),
            BookError::InvalidLevel { price, qty } => (2, price, qty, 0),
            BookError::InvalidOrder { order, price, qty } => (3, i64::from(order), price, qty),
            BookError::UnknownEvent(event) => (4, event, 0, 0),
            BookError::OrderOutOfRange { order, limit } => {
                (5, i64::from(order), i64::from(limit), 0)
            }
        };
        kind.push(k);
        a.push(x);
        b.push(y);
        c.push(z);
    }
    out.set_item("err_message", as_bytes(py, &index))?;
    out.set_item("err_kind", as_bytes(py, &kind))?;
    out.set_item("err_a", as_bytes(py, &a))?;
    out.set_item("err_b", as_bytes(py, &b))?;
    out.set_item("err_c", as_bytes(py, &c))?;
    Ok(out)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(parse_decimal, m)?)?;
    m.add_function(wrap_pyfunction!(token_units, m)?)?;
    m.add_function(wrap_pyfunction!(replay_channel, m)?)?;
    m.add_function(wrap_pyfunction!(bookat::book_at_replay, m)?)?;
    m.add_function(wrap_pyfunction!(bookat::futures_book_at_replay, m)?)?;
    m.add_class::<PyL2Book>()?;
    m.add_class::<PyL3Book>()?;
    m.add("MAX_TOKEN_LEN", decimal::MAX_TOKEN_LEN)?;
    m.add("MAX_SCALE", MAX_SCALE)?;
    crate::fix_python::register(m)?;
    crate::python_spot::register(m)?;
    crate::python_ingest::register(m)?;
    crate::fixbook_python::register(m)?;
    crate::python_futures::register(m)?;
    crate::python_lane::register(m)?;
    Ok(())
}
