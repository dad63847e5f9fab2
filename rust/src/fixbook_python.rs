//! The binding of FIX market data into books ([`crate::fixbook::FixBooks`]):
//! `recorder._core.FixBooks`.
//!
//! `FixBooks(level3=False)`; `subscribe(symbol, depth=None, price_precision=None,
//! qty_precision=None)`; `feed(messages)` takes a list of `bytes` (each one whole FIX
//! message), `feed_buffer(buffer, offsets)` one buffer and `n + 1` little-endian int64
//! offsets; both decode and apply the batch with the GIL released and return a dict of
//! little-endian `bytes` columns (read with `numpy.frombuffer` or `memoryview.cast`):
//! `verdict`, `msg_type`, `reason` (u8), `symbol` (u32, index into `symbols()`), `seq_num`
//! (u64), `entries`, `trades`, `expected`, `computed` (u32), and for rejected messages only
//! `detail_index` (u32), `detail_end` (u32 end offsets) and `detail_text` (UTF-8). Codes:
//! `FIX_BOOK_VERDICTS`, `FIX_BOOK_REASONS`. No per-message Python object is made; no input
//! makes it panic.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::decimal::MAX_SCALE;
use crate::fixbook::{self, FixBooks, FixVerdicts, units_text};
use crate::python::project_error;
use crate::python_batch::{buffer_bounds, buffer_slices, held_bytes, le_bytes};

fn columns<'py>(py: Python<'py>, v: &FixVerdicts) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("verdict", PyBytes::new(py, &v.verdict))?;
    out.set_item("msg_type", PyBytes::new(py, &v.msg_type))?;
    out.set_item("reason", PyBytes::new(py, &v.reason))?;
    out.set_item("symbol", le_bytes(py, &v.symbol, u32::to_le_bytes))?;
    out.set_item("seq_num", le_bytes(py, &v.seq_num, u64::to_le_bytes))?;
    out.set_item("entries", le_bytes(py, &v.entries, u32::to_le_bytes))?;
    out.set_item("trades", le_bytes(py, &v.trades, u32::to_le_bytes))?;
    out.set_item("expected", le_bytes(py, &v.expected, u32::to_le_bytes))?;
    out.set_item("computed", le_bytes(py, &v.computed, u32::to_le_bytes))?;
    let mut index = Vec::with_capacity(v.details.len());
    let mut ends = Vec::with_capacity(v.details.len());
    let mut text = String::new();
    for (i, detail) in &v.details {
        index.push(*i);
        text.push_str(detail);
        ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
    }
    out.set_item("detail_index", le_bytes(py, &index, u32::to_le_bytes))?;
    out.set_item("detail_end", le_bytes(py, &ends, u32::to_le_bytes))?;
    out.set_item("detail_text", PyBytes::new(py, text.as_bytes()))?;
    Ok(out)
}

fn precision(py: Python<'_>, name: &str, value: Option<i64>) -> PyResult<Option<u8>> {
    value
        .map(|v| {
            u8::try_from(v)
                .ok()
                .filter(|&p| p <= MAX_SCALE)
                .ok_or_else(|| {
                    project_error(
                        py,
                        "BookError",
                        format!("{name} must be in 0..={MAX_SCALE}, got {v}"),
                    )
                })
        })
        .transpose()
}

type Levels = Vec<(String, String)>;
type Orders = Vec<(String, String, String)>;

/// Books of one FIX market-data session, fed in batches of whole messages (see the module).
#[pyclass(name = "FixBooks", module = "recorder._core")]
struct PyFixBooks {
    inner: FixBooks,
}

#[pymethods]
impl PyFixBooks {
    #[new]
    #[pyo3(signature = (level3=false))]
    fn new(level3: bool) -> Self {
        PyFixBooks {
            inner: FixBooks::new(level3),
        }
    }

    /// True for an L3 session's books.
    #[getter]
    fn level3(&self) -> bool {
        self.inner.level3()
    }

    /// Depth and precisions of `symbol`'s next snapshots (None: the defaults, see the
    /// module); raises `BookError` for a depth < 1 or a precision outside 0..=18. Both
    /// precisions or neither.
    #[pyo3(signature = (symbol, depth=None, price_precision=None, qty_precision=None))]
    fn subscribe(
        &mut self,
        py: Python<'_>,
        symbol: &str,
        depth: Option<i64>,
        price_precision: Option<i64>,
        qty_precision: Option<i64>,
    ) -> PyResult<()> {
        let depth = depth
            .map(|d| {
                usize::try_from(d).ok().filter(|&d| d >= 1).ok_or_else(|| {
                    project_error(py, "BookError", format!("depth must be >= 1, got {d}"))
                })
            })
            .transpose()?;
        let pp = precision(py, "price_precision", price_precision)?;
        let qp = precision(py, "qty_precision", qty_precision)?;
        let both = match (pp, qp) {
            (Some(p), Some(q)) => Some((p, q)),
            (None, None) => None,
            _ => {
                return Err(project_error(
                    py,
                    "BookError",
                    "give both precisions or neither".to_owned(),
                ));
            }
        };
        self.inner
            .subscribe(symbol, depth, both)
            .map_err(|e| project_error(py, "BookError", e))
    }

    /// Decode and apply a list of `bytes` messages; returns the verdict columns.
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        messages: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyDict>> {
        // strong references held here keep every message alive while the GIL is released
        let held = held_bytes(py, messages, "messages")?;
        let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
        let inner = &mut self.inner;
        let verdicts = py.detach(move || inner.feed(slices.iter().copied()));
        columns(py, &verdicts)
    }

    /// Decode and apply the messages `buffer[offsets[i]:offsets[i + 1]]`; `offsets` is a
    /// buffer of `n + 1` non-decreasing little-endian int64 within `buffer`.
    fn feed_buffer<'py>(
        &mut self,
        py: Python<'py>,
        buffer: &Bound<'py, PyBytes>,
        offsets: &Bound<'py, PyBytes>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let data = buffer.as_bytes();
        let bounds = buffer_bounds(py, data.len(), offsets.as_bytes())?;
        let inner = &mut self.inner;
        let verdicts = py.detach(move || inner.feed(buffer_slices(data, &bounds)));
        columns(py, &verdicts)
    }

    /// Symbol names by id (what the `symbol` column indexes).
    fn symbols(&self) -> Vec<String> {
        self.inner
            .symbols()
            .iter()
            .map(|s| s.as_ref().to_owned())
            .collect()
    }

    /// Whether `symbol` has a valid book.
    fn has_book(&self, symbol: &str) -> bool {
        self.inner.has_book(symbol)
    }

    /// `(price_precision, qty_precision)` of `symbol`'s valid book, else None.
    fn precision(&self, symbol: &str) -> Option<(u8, u8)> {
        self.inner.precision(symbol)
    }

    /// Trade entries counted for `symbol`.
    fn trade_count(&self, symbol: &str) -> u64 {
        self.inner.trade_count(symbol)
    }

    /// `(bids, asks)`: the `n` best levels per side of `symbol`'s valid book as
    /// `(price, size)` decimal text at the book's precisions, best first; None without one.
    fn top(&self, symbol: &str, n: usize) -> Option<(Levels, Levels)> {
        let (pp, qp) = self.inner.precision(symbol)?;
        let (bids, asks) = self.inner.top(symbol, n)?;
        let text = |levels: Vec<fixbook::LevelUnits>| {
            levels
                .into_iter()
                .map(|(p, q)| (units_text(i128::from(p), pp), units_text(q, qp)))
                .collect()
        };
        Some((text(bids), text(asks)))
    }

    /// `(bids, asks)`: the orders of the `n` best levels per side of `symbol`'s valid L3
    /// book as `(MDEntryID, price, size)` text, best level first, queue order.
    fn orders(&self, symbol: &str, n: usize) -> Option<(Orders, Orders)> {
        let (pp, qp) = self.inner.precision(symbol)?;
        let (bids, asks) = self.inner.orders(symbol, n)?;
        let text = |orders: Vec<(String, i64, i64)>| {
            orders
                .into_iter()
                .map(|(id, p, q)| {
                    (
                        id,
                        units_text(i128::from(p), pp),
                        units_text(i128::from(q), qp),
                    )
                })
                .collect()
        };
        Some((text(bids), text(asks)))
    }
}

/// Register `FixBooks` and its code tables in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFixBooks>()?;
    m.add("FIX_BOOK_REASONS", fixbook::REASONS.to_vec())?;
    m.add(
        "FIX_BOOK_VERDICTS",
        vec!["ok", "mismatch", "reject", "skipped", "unchecked"],
    )?;
    debug_assert_eq!(fixbook::UNCHECKED, 4);
    Ok(())
}
