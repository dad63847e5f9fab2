//! The binding of [`crate::ingest`]: `recorder._core.sim_record_frames` (a whole sim record
//! decoded in bulk, the GIL released while each chunk is parsed) and
//! `recorder._core.journal_encode_v2` (format-2 journal records of a run of frames in one
//! call). Bad input never raises from here: what the fast path does not take is handed back
//! for the reference Python code to decide.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::ingest::{self, SimLine};

/// Input bytes parsed per GIL release (lines are never split across chunks).
const CHUNK_BYTES: usize = 4 << 20;

/// Decode a `recorder sim --record` input: returns `(recv_ns, conn, stream, payloads,
/// others)`, the first four the frame lines' columns in order (`stream`: one byte per frame,
/// 0 spot, 1 l3, 2 futures), `others` a list of `(position, start, end)`: the line
/// `data[start:end]` is for the reference to decode, its result going before frame
/// `position`. Whitespace-only lines are skipped (as the reference skips them).
#[pyfunction]
#[allow(clippy::type_complexity)]
fn sim_record_frames<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
) -> PyResult<(
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyBytes>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
)> {
    let bytes = data.as_bytes();
    let recv = PyList::empty(py);
    let conn = PyList::empty(py);
    let payloads = PyList::empty(py);
    let others = PyList::empty(py);
    let mut streams = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = (start + CHUNK_BYTES).min(bytes.len());
        if end < bytes.len() {
            end = bytes[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |p| end + p + 1);
        }
        let chunk = &bytes[start..end];
        let lines = py.detach(|| ingest::parse_sim_record(chunk));
        for line in lines {
            match line {
                SimLine::Frame(f) => {
                    recv.append(f.recv_ns)?;
                    match i64::try_from(f.conn) {
                        Ok(c) => conn.append(c)?,
                        Err(_) => conn.append(f.conn)?,
                    }
                    streams.push(f.stream);
                    payloads.append(PyBytes::new(py, &f.payload))?;
                }
                SimLine::Blank => {}
                SimLine::Other(a, b) => {
                    others.append((streams.len(), start + a, start + b))?;
                }
            }
        }
        start = end;
    }
    Ok((recv, conn, PyBytes::new(py, &streams), payloads, others))
}

/// A frame's fields as the encoder needs them.
struct Fields<'py> {
    recv: i64,
    conn: u64,
    sd: u8,
    meta: Vec<u8>,
    payload: Bound<'py, PyBytes>,
}

/// One frame's fields, or `None` for anything unusual.
fn frame_fields<'py>(
    frame: &Bound<'py, PyAny>,
    streams: &Bound<'py, PyTuple>,
) -> Option<Fields<'py>> {
    let py = frame.py();
    let recv: i64 = frame.getattr(intern!(py, "recv_ns")).ok()?.extract().ok()?;
    let conn_obj = frame.getattr(intern!(py, "conn_id")).ok()?;
    let conn = match conn_obj.extract::<u64>() {
        Ok(c) => c,
        Err(_) => u64::from_ne_bytes(conn_obj.extract::<i64>().ok()?.to_ne_bytes()),
    };
    let stream = frame.getattr(intern!(py, "stream")).ok()?;
    let stream = stream.cast::<PyString>().ok()?.to_str().ok()?.to_owned();
    let index = streams
        .iter()
        .position(|s| s.cast::<PyString>().ok().and_then(|s| s.to_str().ok()) == Some(&stream))?;
    let direction = frame.getattr(intern!(py, "direction")).ok()?;
    let dir = match direction.cast::<PyString>().ok()?.to_str().ok()? {
        "in" => 0,
        "out" => 1,
        _ => return None,
    };
    let sd = u8::try_from(index * 2 + dir).ok()?;
    let meta = frame.getattr(intern!(py, "meta")).ok()?;
    let meta = meta
        .cast::<PyString>()
        .ok()?
        .to_str()
        .ok()?
        .as_bytes()
        .to_vec();
    let payload = frame
        .getattr(intern!(py, "payload"))
        .ok()?
        .cast_into::<PyBytes>()
        .ok()?;
    Some(Fields {
        recv,
        conn,
        sd,
        meta,
        payload,
    })
}

/// Encode `frames[start:]` as format-2 records until `limit` bytes are reached (at least one
/// frame when `limit > 0`) or a frame the reference encoder must handle (an unusual field, a
/// meta longer than 65,535 bytes): returns `(records, count, prev)`. `prev` is the previous
/// record's clock and `conns` the segment's connection table (`conn_id -> index`, updated
/// exactly as `_Encoder.encode` updates it); `streams` is `recorder.frames.STREAMS`.
#[pyfunction]
fn journal_encode_v2<'py>(
    py: Python<'py>,
    frames: &Bound<'py, PyList>,
    start: usize,
    prev: i64,
    conns: &Bound<'py, PyDict>,
    streams: &Bound<'py, PyTuple>,
    limit: usize,
) -> PyResult<(Bound<'py, PyBytes>, usize, i64)> {
    let mut out = Vec::new();
    let mut prev = prev;
    let mut count = 0;
    let mut index = start;
    while index < frames.len() && out.len() < limit {
        let frame = frames.get_item(index)?;
        let Some(f) = frame_fields(&frame, streams) else {
            break;
        };
        let conn_index = match conns.get_item(f.conn)? {
            Some(i) => Some(i.extract::<u16>()?),
            None => None,
        };
        let record = ingest::Record {
            recv_ns: f.recv,
            conn: f.conn,
            conn_index,
            sd: f.sd,
            meta: &f.meta,
            payload: f.payload.as_bytes(),
        };
        let mut next_prev = prev;
        if ingest::encode_record_v2(&mut out, &mut next_prev, &record).is_none() {
            break;
        }
        prev = next_prev;
        if conn_index.is_none() && conns.len() < usize::from(ingest::CONN_ESC) {
            conns.set_item(f.conn, conns.len())?;
        }
        count += 1;
        index += 1;
    }
    Ok((PyBytes::new(py, &out), count, prev))
}

/// Register the ingest functions in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sim_record_frames, m)?)?;
    m.add_function(wrap_pyfunction!(journal_encode_v2, m)?)?;
    Ok(())
}
