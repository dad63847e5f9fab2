//! The binding of the batched Futures book verifier ([`crate::futures::FuturesBooks`]):
//! `recorder._core.FuturesBooks`.
//!
//! `feed(frames)` takes a list of `bytes` frames, `feed_buffer(buffer, offsets)` one buffer
//! and `n + 1` int64 offsets; both decode and apply the whole batch with the GIL released and
//! return a dict of little-endian `bytes` columns (read with `numpy.frombuffer`): `verdict`,
//! `kind`, `reason`, `crossed`, `price_scale`, `qty_scale` (u8), `product` (u32, index into
//! `products()`), `seq`, `expected`, `ts_ns`, `price`, `qty` (i64, `i64::MIN` when absent),
//! and for rejected frames only `detail_frame` (u32), `detail_end` (u32 end offsets) and
//! `detail_text` (UTF-8). Code tables: `FUTURES_VERDICTS`, `FUTURES_REASONS`. No input makes
//! it panic.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::futures::{self, FuturesBooks, Verdicts};
use crate::python_batch::{buffer_bounds, buffer_slices, held_bytes, le_bytes};

fn columns<'py>(py: Python<'py>, v: &Verdicts) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("verdict", PyBytes::new(py, &v.verdict))?;
    out.set_item("kind", PyBytes::new(py, &v.kind))?;
    out.set_item("reason", PyBytes::new(py, &v.reason))?;
    out.set_item("crossed", PyBytes::new(py, &v.crossed))?;
    out.set_item("product", le_bytes(py, &v.product, u32::to_le_bytes))?;
    out.set_item("seq", le_bytes(py, &v.seq, i64::to_le_bytes))?;
    out.set_item("expected", le_bytes(py, &v.expected, i64::to_le_bytes))?;
    out.set_item("ts_ns", le_bytes(py, &v.ts_ns, i64::to_le_bytes))?;
    out.set_item("price", le_bytes(py, &v.price, i64::to_le_bytes))?;
    out.set_item("price_scale", PyBytes::new(py, &v.price_scale))?;
    out.set_item("qty", le_bytes(py, &v.qty, i64::to_le_bytes))?;
    out.set_item("qty_scale", PyBytes::new(py, &v.qty_scale))?;
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

/// Futures `book_snapshot`/`book` books of one stream, fed in batches (see the module doc).
#[pyclass(name = "FuturesBooks", module = "recorder._core")]
struct PyFuturesBooks {
    inner: FuturesBooks,
}

#[pymethods]
impl PyFuturesBooks {
    #[new]
    #[pyo3(signature = (max_frame_bytes=futures::DEFAULT_MAX_FRAME_BYTES))]
    fn new(max_frame_bytes: usize) -> Self {
        PyFuturesBooks {
            inner: FuturesBooks::new(max_frame_bytes),
        }
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

    /// Product ids by index (what the `product` column indexes), exactly as sent.
    fn products(&self) -> Vec<String> {
        self.inner
            .products()
            .iter()
            .map(|s| s.as_ref().to_owned())
            .collect()
    }

    /// `(seq, bids, asks)` of `product`'s valid book, levels as `(price, qty)` exact text,
    /// best first, at most `depth` per side; None without a valid book.
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (product, depth=None))]
    fn levels(
        &self,
        product: &str,
        depth: Option<usize>,
    ) -> Option<(i64, Vec<(String, String)>, Vec<(String, String)>)> {
        let book = self.inner.book(product)?;
        let depth = depth.unwrap_or(usize::MAX);
        let side = |ask: bool| {
            book.levels(ask, depth)
                .into_iter()
                .map(|(p, q)| (p.to_owned(), q.to_owned()))
                .collect()
        };
        Some((book.seq(), side(false), side(true)))
    }
}

/// Register `FuturesBooks` and its code tables in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFuturesBooks>()?;
    m.add("FUTURES_REASONS", futures::REASONS.to_vec())?;
    m.add("FUTURES_VERDICTS", futures::VERDICTS.to_vec())?;
    Ok(())
}
