//! What the batched bindings (`SpotBooks`, `FuturesBooks`, `FixBooks`) share: taking a batch
//! from Python (a list of `bytes`, or one buffer with `n + 1` little-endian int64 offsets) and
//! returning columns as little-endian `bytes`.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::python::project_error;

/// `values` as one `bytes` of their little-endian encodings (read with `numpy.frombuffer`).
pub(crate) fn le_bytes<'py, T: Copy, const N: usize>(
    py: Python<'py>,
    values: &[T],
    to: fn(T) -> [u8; N],
) -> Bound<'py, PyBytes> {
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        out.extend_from_slice(&to(v));
    }
    PyBytes::new(py, &out)
}

/// Strong references to every item of `items` (`what`: their name in the error), held by the
/// caller so that their bytes stay alive while the GIL is released; a `ColumnError` if one is
/// not `bytes`.
pub(crate) fn held_bytes<'py>(
    py: Python<'py>,
    items: &Bound<'py, PyList>,
    what: &str,
) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    items
        .iter()
        .map(|f| {
            f.cast_into::<PyBytes>()
                .map_err(|_| project_error(py, "ColumnError", format!("{what} must be bytes")))
        })
        .collect()
}

/// The `n + 1` offsets of a buffer of `len` bytes, decoded from `raw` (little-endian int64);
/// a `ColumnError` unless there is at least one, and they are non-decreasing and within the
/// buffer.
pub(crate) fn buffer_bounds(py: Python<'_>, len: usize, raw: &[u8]) -> PyResult<Vec<usize>> {
    let bad = || {
        project_error(
            py,
            "ColumnError",
            "offsets must be n + 1 non-decreasing int64 within the buffer".to_owned(),
        )
    };
    if raw.len() % 8 != 0 || raw.is_empty() {
        return Err(bad());
    }
    let mut bounds: Vec<usize> = Vec::with_capacity(raw.len() / 8);
    for chunk in raw.chunks_exact(8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let v = usize::try_from(i64::from_le_bytes(b))
            .ok()
            .filter(|&v| v <= len && bounds.last().is_none_or(|&prev| v >= prev))
            .ok_or_else(bad)?;
        bounds.push(v);
    }
    Ok(bounds)
}

/// The slices `data[bounds[i]..bounds[i + 1]]` (bounds from [`buffer_bounds`]).
pub(crate) fn buffer_slices<'a>(
    data: &'a [u8],
    bounds: &'a [usize],
) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
    bounds
        .windows(2)
        .map(move |w| data.get(w[0]..w[1]).unwrap_or_default())
}
