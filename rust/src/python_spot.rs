//! The binding of the batched Spot v2 book verifier ([`crate::batch::SpotBooks`]):
//! `recorder._core.SpotBooks`.
//!
//! `feed(frames)` takes a list of `bytes` frames, `feed_buffer(buffer, offsets)` one buffer
//! and `n + 1` int64 offsets; both decode and apply the whole batch with the GIL released and
//! return a dict of little-endian `bytes` columns (read with `numpy.frombuffer`): `verdict`
//! (u8), `channel` (u8), `kind` (u8), `reason` (u8), `symbol` (u32, index into `symbols()`),
//! `expected`, `computed` (u32), `ts_ns` (i64), and for rejected frames only `detail_frame`
//! (u32), `detail_end` (u32 end offsets) and `detail_text` (UTF-8). No per-frame Python
//! object is made; no input makes it panic.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::batch::{self, SpotBooks, Verdicts};
use crate::python::project_error;
use crate::python_batch::{buffer_bounds, buffer_slices, held_bytes, le_bytes};
use crate::spot;

fn columns<'py>(py: Python<'py>, v: &Verdicts) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("verdict", PyBytes::new(py, &v.verdict))?;
    out.set_item("channel", PyBytes::new(py, &v.channel))?;
    out.set_item("kind", PyBytes::new(py, &v.kind))?;
    out.set_item("reason", PyBytes::new(py, &v.reason))?;
    out.set_item("symbol", le_bytes(py, &v.symbol, u32::to_le_bytes))?;
    out.set_item("expected", le_bytes(py, &v.expected, u32::to_le_bytes))?;
    out.set_item("computed", le_bytes(py, &v.computed, u32::to_le_bytes))?;
    out.set_item("ts_ns", le_bytes(py, &v.ts_ns, i64::to_le_bytes))?;
    let mut frames = Vec::with_capacity(v.details.len());
    let mut ends = Vec::with_capacity(v.details.len());
    let mut text = String::new();
    for (frame, detail) in &v.details {
        frames.push(*frame);
        text.push_str(detail);
        ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
    }
    out.set_item("detail_frame", le_bytes(py, &frames, u32::to_le_bytes))?;
    out.set_item("detail_end", le_bytes(py, &ends, u32::to_le_bytes))?;
    out.set_item("detail_text", PyBytes::new(py, text.as_bytes()))?;
    Ok(out)
}

/// Spot v2 `book` and `level3` books of one stream, fed in batches (see the module doc).
#[pyclass(name = "SpotBooks", module = "recorder._core")]
struct PySpotBooks {
    inner: SpotBooks,
}

#[pymethods]
impl PySpotBooks {
    #[new]
    #[pyo3(signature = (max_frame_bytes=spot::DEFAULT_MAX_FRAME_BYTES))]
    fn new(max_frame_bytes: usize) -> Self {
        PySpotBooks {
            inner: SpotBooks::new(max_frame_bytes),
        }
    }

    /// Use these precisions for `symbol`'s next snapshots (they win over the instrument
    /// channel's); raises `BookError` outside 0..=18.
    fn set_precision(
        &mut self,
        py: Python<'_>,
        symbol: &str,
        price_precision: i64,
        qty_precision: i64,
    ) -> PyResult<()> {
        let max = i64::from(crate::decimal::MAX_SCALE);
        if !(0..=max).contains(&price_precision) || !(0..=max).contains(&qty_precision) {
            return Err(project_error(
                py,
                "BookError",
                format!("precisions must be in 0..={max}, got {price_precision}, {qty_precision}"),
            ));
        }
        self.inner
            .set_precision(symbol, price_precision, qty_precision);
        Ok(())
    }

    /// Decode and apply a list of `bytes` frames; returns the verdict columns.
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        frames: &Bound<'py, PyList>,
    ) -> PyResult<Bound<'py, PyDict>> {
        // strong references held here keep every frame alive while the GIL is released
        let held = held_bytes(py, frames, "frames")?;
        let slices: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
        let inner = &mut self.inner;
        let verdicts = py.detach(move || inner.feed(slices.iter().copied()));
        columns(py, &verdicts)
    }

    /// Decode and apply the frames `buffer[offsets[i]:offsets[i + 1]]`; `offsets` is a
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

    /// `(bids, asks)` of `symbol`'s valid L2 book as `(price, qty)` units, best first; None
    /// without one.
    #[allow(clippy::type_complexity)]
    fn l2_levels(&self, symbol: &str) -> Option<(Vec<(i64, i64)>, Vec<(i64, i64)>)> {
        let book = self.inner.l2_book(symbol)?;
        Some((book.levels(false).collect(), book.levels(true).collect()))
    }

    /// `(bids, asks)` of `symbol`'s valid level3 book as `(order_id, price, qty)`, best level
    /// first, queue order; None without one.
    #[allow(clippy::type_complexity)]
    fn l3_orders(
        &self,
        symbol: &str,
    ) -> Option<(Vec<(String, i64, i64)>, Vec<(String, i64, i64)>)> {
        let (book, names) = self.inner.l3_book(symbol)?;
        let side = |ask: bool| {
            book.orders(ask)
                .map(|o| {
                    let name = names.get(o.order as usize).map_or("", |n| n.as_ref());
                    (name.to_owned(), o.price, o.qty)
                })
                .collect()
        };
        Some((side(false), side(true)))
    }
}

/// Register `SpotBooks` and its code tables in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySpotBooks>()?;
    m.add("SPOT_REASONS", spot::REASONS.to_vec())?;
    m.add(
        "SPOT_VERDICTS",
        vec![
            "ok",
            "mismatch",
            "reject",
            "skipped",
            "unchecked",
            "crossed",
        ],
    )?;
    m.add(
        "SPOT_CHANNELS",
        vec!["", "book", "level3", "instrument", "ack", "other"],
    )?;
    debug_assert_eq!(batch::CROSSED, 5);
    Ok(())
}
