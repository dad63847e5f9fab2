//! The Python binding of the FIX codec ([`crate::fix`]), registered into `recorder._core`.
//!
//! * `FixFramer().feed(data) -> list[dict]`: frames and decodes every complete message in
//!   `data` (plus what was held back), with the GIL released. Each dict has `ok`, `raw`
//!   (the exact bytes), and for a message `msg_type`, `seq_num`, `sender`, `target`,
//!   `sending_time_ns`, `poss_dup`, `orig_sending_time_ns`, `fields` (`{tag: str}` of the
//!   first occurrence outside the 268 group), `field_list` (`[(tag, str)]` in wire order),
//!   `entries` and `book_checksum`; for a reject `reason` (a stable code), `detail`,
//!   `ref_tag`, `msg_type`, `seq_num`, `poss_dup`. An entry is a dict with `action`, `type`
//!   (`"0"` bid, `"1"` offer, `"2"` trade), `id`, `price` and `size` as `(mantissa, scale)`,
//!   `time`, `timestamp_ns`, `queue_time_ns`, `ord_type`, `aggressor_side`.
//! * `encode_fix(...) -> bytes`: a complete message. Errors raise
//!   `recorder.protocol.errors.FixError`.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::decimal::Decimal;
use crate::fix::{self, Frame, Framer, Header, MdEntry};

fn fix_error(py: Python<'_>, message: String) -> PyErr {
    let class = py
        .import("recorder.protocol.errors")
        .and_then(|module| module.getattr("FixError"))
        .and_then(|class| class.cast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(class) => PyErr::from_type(class, message),
        Err(err) => PyRuntimeError::new_err(format!(
            "recorder.protocol.errors.FixError unavailable ({err}): {message}"
        )),
    }
}

fn decimal_tuple<'py>(py: Python<'py>, d: Option<Decimal>) -> PyResult<Bound<'py, PyAny>> {
    match d {
        Some(d) => Ok(PyTuple::new(py, [d.mantissa, i64::from(d.scale)])?.into_any()),
        None => Ok(py.None().into_bound(py)),
    }
}

fn char_str(c: Option<u8>) -> Option<String> {
    c.map(|c| char::from(c).to_string())
}

fn entry_dict<'py>(py: Python<'py>, e: &MdEntry) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("action", e.action)?;
    d.set_item("type", char::from(e.entry_type).to_string())?;
    d.set_item("id", e.entry_id.as_deref())?;
    d.set_item("price", decimal_tuple(py, e.price)?)?;
    d.set_item("size", decimal_tuple(py, e.size)?)?;
    d.set_item("time", e.entry_time.as_deref())?;
    d.set_item("timestamp_ns", e.timestamp_ns)?;
    d.set_item("queue_time_ns", e.queue_time_ns)?;
    d.set_item("ord_type", char_str(e.ord_type))?;
    d.set_item("aggressor_side", char_str(e.aggressor_side))?;
    Ok(d)
}

fn frame_dict<'py>(py: Python<'py>, frame: &Frame) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("raw", PyBytes::new(py, &frame.raw))?;
    match &frame.result {
        Ok(m) => {
            d.set_item("ok", true)?;
            d.set_item("msg_type", &m.msg_type)?;
            d.set_item("seq_num", m.seq_num)?;
            d.set_item("sender", &m.sender)?;
            d.set_item("target", &m.target)?;
            d.set_item("sending_time_ns", m.sending_time_ns)?;
            d.set_item("poss_dup", m.poss_dup)?;
            d.set_item("orig_sending_time_ns", m.orig_sending_time_ns)?;
            let fields = PyDict::new(py);
            let list = PyList::empty(py);
            for (tag, value) in &m.fields {
                if !fields.contains(tag)? {
                    fields.set_item(tag, value)?;
                }
                list.append((tag, value))?;
            }
            d.set_item("fields", fields)?;
            d.set_item("field_list", list)?;
            let entries = PyList::empty(py);
            for e in &m.entries {
                entries.append(entry_dict(py, e)?)?;
            }
            d.set_item("entries", entries)?;
            d.set_item("book_checksum", m.book_checksum)?;
        }
        Err(r) => {
            d.set_item("ok", false)?;
            d.set_item("reason", r.reason.code())?;
            d.set_item("detail", r.reason.to_string())?;
            d.set_item("ref_tag", r.reason.tag())?;
            d.set_item("msg_type", r.msg_type.as_deref())?;
            d.set_item("seq_num", r.seq_num)?;
            d.set_item("poss_dup", r.poss_dup)?;
        }
    }
    Ok(d)
}

/// A FIX 4.4 byte-stream framer and decoder (one per connection).
#[pyclass(name = "FixFramer", module = "recorder._core")]
pub struct PyFixFramer {
    inner: Framer,
}

#[pymethods]
impl PyFixFramer {
    #[new]
    fn new() -> Self {
        PyFixFramer {
            inner: Framer::new(),
        }
    }

    /// Frames completed by `data` (bytes-like), as dicts; the GIL is released while decoding.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        let data = data.to_vec();
        let inner = &mut self.inner;
        let frames = py.detach(move || inner.feed(&data));
        let out = PyList::empty(py);
        for frame in &frames {
            out.append(frame_dict(py, frame)?)?;
        }
        Ok(out)
    }

    /// Bytes held back as the start of an incomplete message.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }
}

fn value_bytes(value: &Bound<'_, PyAny>) -> Option<Vec<u8>> {
    if let Ok(s) = value.cast::<PyString>() {
        return s.to_str().ok().map(|s| s.as_bytes().to_vec());
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Some(b.as_bytes().to_vec());
    }
    None
}

/// Encode one message: header (8, 9, 35, 34, 49, 52, 56 and, for a resend, 43 and 122),
/// `fields` in order (repeating groups flat, count first), CheckSum.
#[pyfunction]
#[pyo3(signature = (msg_type, seq_num, sender, target, sending_time_ns, fields, poss_dup=false, orig_sending_time_ns=None))]
#[allow(clippy::too_many_arguments)]
fn encode_fix<'py>(
    py: Python<'py>,
    msg_type: &str,
    seq_num: u64,
    sender: &str,
    target: &str,
    sending_time_ns: i64,
    fields: &Bound<'py, PyAny>,
    poss_dup: bool,
    orig_sending_time_ns: Option<i64>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut owned: Vec<(u32, Vec<u8>)> = Vec::new();
    for item in fields.try_iter()? {
        let item = item?;
        let (tag, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item
            .extract()
            .map_err(|_| fix_error(py, "each field must be a (tag, value) pair".to_owned()))?;
        let tag: u32 = tag
            .extract()
            .map_err(|_| fix_error(py, "a tag must be an int in 1..2^32".to_owned()))?;
        let value = value_bytes(&value)
            .ok_or_else(|| fix_error(py, format!("tag {tag}: value must be str or bytes")))?;
        owned.push((tag, value));
    }
    let body: Vec<(u32, &[u8])> = owned.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    let header = Header {
        msg_type,
        seq_num,
        sender,
        target,
        sending_time_ns,
        poss_dup,
        orig_sending_time_ns,
    };
    let bytes = fix::encode(&header, &body).map_err(|e| fix_error(py, e.to_string()))?;
    Ok(PyBytes::new(py, &bytes))
}

/// Register the FIX codec into the `recorder._core` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyFixFramer>()?;
    m.add_function(wrap_pyfunction!(encode_fix, m)?)?;
    m.add("FIX_MAX_MESSAGE_LEN", fix::MAX_MESSAGE_LEN)?;
    m.add("FIX_MAX_GROUP_ENTRIES", fix::MAX_GROUP_ENTRIES)?;
    Ok(())
}
