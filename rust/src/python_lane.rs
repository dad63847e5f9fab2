//! The binding of the pipeline's Spot v2 book lane: `recorder._core.SpotLane` derives runs of
//! `book` frames straight into a `recorder.pipeline.Pipeline`'s buffers, and
//! `recorder._core.LaneL2Book` is the book it keeps in the pipeline's epochs.
//!
//! The lane does, per frame, exactly what `Pipeline.feed` -> `_spot` -> `_l2` do (same
//! order, same values appended to the same lists, same counters), with C-API dict/list/
//! attribute operations only on the common path; the rare events call the pipeline's own
//! methods (`_tick`, `_end_epoch`, `_close_gap`, `_checkpoint_row`, `_desync`, `flush`,
//! `_Epoch(...)`), so they stay identical by construction. A frame the lane does not take
//! (another stream or message, a decode reject, several items, an unadmitted symbol, no open
//! epoch, a book of the reference model, a token the reference spells or refuses itself, see
//! [`crate::lane`]) is left untouched and handed back: the reference derives it.

use std::collections::HashMap;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyString, PyTuple};

use crate::l2::L2Book;
use crate::lane;
use crate::python::project_error;
use crate::spot::{self, BookItem, DEFAULT_MAX_FRAME_BYTES, Level, Scratch};

/// Most distinct symbols remembered (the memo restarts when full).
const SYMBOL_MEMO: usize = 100_000;

/// A Kraken spot L2 book of the pipeline's lane: the compiled book plus what the reference
/// book carries (symbol, precisions). `recorder.pipeline.lane.CoreL2Book` adds the reference
/// book's checkpoint methods.
#[pyclass(name = "LaneL2Book", module = "recorder._core", subclass)]
pub struct LaneL2Book {
    book: L2Book,
    symbol: Py<PyString>,
    pp: u8,
    qp: u8,
}

fn precision_arg(py: Python<'_>, name: &str, value: i64) -> PyResult<u8> {
    u8::try_from(value)
        .ok()
        .filter(|&v| v <= lane::MAX_PRECISION)
        .ok_or_else(|| {
            project_error(
                py,
                "BookError",
                format!(
                    "{name} must be an int in 0..{}, got {value}",
                    lane::MAX_PRECISION
                ),
            )
        })
}

#[pymethods]
impl LaneL2Book {
    #[new]
    fn new(
        py: Python<'_>,
        symbol: Bound<'_, PyString>,
        depth: i64,
        price_precision: i64,
        qty_precision: i64,
    ) -> PyResult<Self> {
        let Some(depth) = usize::try_from(depth).ok().filter(|&d| d >= 1) else {
            return Err(project_error(
                py,
                "BookError",
                format!("depth must be a positive int, got {depth}"),
            ));
        };
        Ok(LaneL2Book {
            book: L2Book::new(depth),
            symbol: symbol.unbind(),
            pp: precision_arg(py, "price_precision", price_precision)?,
            qp: precision_arg(py, "qty_precision", qty_precision)?,
        })
    }

    /// The pair.
    #[getter]
    fn symbol(&self, py: Python<'_>) -> Py<PyString> {
        self.symbol.clone_ref(py)
    }

    /// The subscribed depth.
    #[getter]
    fn depth(&self) -> usize {
        self.book.depth()
    }

    /// Decimals of prices.
    #[getter]
    fn price_precision(&self) -> u8 {
        self.pp
    }

    /// Decimals of quantities.
    #[getter]
    fn qty_precision(&self) -> u8 {
        self.qp
    }

    /// True once a snapshot was applied and no message failed since.
    #[getter]
    fn ready(&self) -> bool {
        self.book.ready()
    }

    /// `(price_units, qty_units)` of one side (`ask`), best first.
    fn side_levels(&self, ask: bool) -> Vec<(i64, i64)> {
        self.book.levels(ask).collect()
    }

    /// Kraken CRC32 of the book.
    fn checksum(&mut self) -> u32 {
        self.book.checksum()
    }

    /// Price levels (bids + asks).
    fn __len__(&self) -> usize {
        self.book.levels(false).count() + self.book.levels(true).count()
    }

    /// A copy of this book (a cheap Rust clone: a commit's cut keeps it while this one goes
    /// on).
    fn copy(&self, py: Python<'_>) -> LaneL2Book {
        LaneL2Book {
            book: self.book.clone(),
            symbol: self.symbol.clone_ref(py),
            pp: self.pp,
            qp: self.qp,
        }
    }

    /// Replace the book with these levels (a restore from a validated checkpoint).
    fn load(
        &mut self,
        py: Python<'_>,
        bids: Vec<(i64, i64)>,
        asks: Vec<(i64, i64)>,
    ) -> PyResult<()> {
        self.book
            .apply(true, bids, asks)
            .map(|_| ())
            .map_err(|e| project_error(py, "BookError", e.to_string()))
    }
}

/// A symbol's Python objects, made once.
struct Sym {
    name: Py<PyString>,
    book_key: Py<PyTuple>,
}

/// What the lane did with one frame.
enum Step {
    /// Not the lane's: the reference derives it.
    NotMine,
    /// Derived; `flush`: the pipeline's rows are due for its sink (`Pipeline.flush`, left
    /// to the caller so that a sink's failure raises as it does from `Pipeline.feed`);
    /// `pending`: rows buffered after the frame.
    Done {
        flush: bool,
        recv: i64,
        pending: i64,
    },
}

/// The pipeline's objects the lane reads for a run of frames (never rebound by the pipeline).
struct Pipe<'py> {
    obj: Bound<'py, PyAny>,
    spot_ok: Bound<'py, PySet>,
    epochs: Bound<'py, PyDict>,
    conns: Bound<'py, PyDict>,
    precisions: Bound<'py, PyDict>,
    ack_depth: Bound<'py, PyDict>,
    mrows: Bound<'py, PyDict>,
    interval: i64,
    cp_messages: i64,
    batch_rows: i64,
}

/// Per-run strings.
struct Names<'py> {
    book: Bound<'py, PyString>,
    snapshot: Bound<'py, PyString>,
    resnapshot: Bound<'py, PyString>,
    instrument: Bound<'py, PyString>,
    inferred: Bound<'py, PyString>,
    epoch_start: Bound<'py, PyString>,
    interval: Bound<'py, PyString>,
    checksum_mismatch: Bound<'py, PyString>,
    crossed: Bound<'py, PyString>,
}

fn add_attr(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>, delta: i64) -> PyResult<()> {
    let v = obj.getattr(name)?.add(delta)?;
    obj.setattr(name, v)
}

/// The Spot v2 book lane of one pipeline (see the module documentation).
#[pyclass(name = "SpotLane", module = "recorder._core")]
pub struct SpotLane {
    scratch: Scratch,
    symbols: HashMap<Box<str>, Sym>,
    bids: Vec<(i64, i64)>,
    asks: Vec<(i64, i64)>,
    epoch_cls: Py<PyAny>,
    l2_cls: Py<PyAny>,
}

#[pymethods]
impl SpotLane {
    /// `epoch_cls`: the pipeline's `_Epoch`; `l2_cls`: the book class of new `book` epochs
    /// (a subclass of `LaneL2Book`).
    #[new]
    fn new(epoch_cls: Py<PyAny>, l2_cls: Py<PyAny>) -> Self {
        SpotLane {
            scratch: Scratch::default(),
            symbols: HashMap::new(),
            bids: Vec::new(),
            asks: Vec::new(),
            epoch_cls,
            l2_cls,
        }
    }

    /// Derive `frames[start:stop]` into `pipeline` while they are the lane's; signals go to
    /// `out`. Stops after a frame that left the pipeline's rows due for its sink, that left at
    /// least `until_rows` rows pending or whose `recv_ns` is at least `until_recv`. Returns
    /// `(next, error, flush)`: `frames[next]` is the first frame not derived (not the lane's,
    /// or `next == stop`), unless `error` is set: then the derivation of `frames[next]` raised
    /// it part-way (the caller handles it as `Pipeline.feed` handles an exception); `flush`:
    /// the caller must call `Pipeline.flush` now (as `Pipeline.feed` does after a frame).
    #[allow(clippy::too_many_arguments)]
    fn feed(
        &mut self,
        py: Python<'_>,
        pipeline: &Bound<'_, PyAny>,
        frames: &Bound<'_, PyList>,
        start: usize,
        stop: usize,
        until_rows: i64,
        until_recv: i64,
        out: &Bound<'_, PyList>,
    ) -> PyResult<(usize, Option<PyErr>, bool)> {
        let pipe = Pipe {
            obj: pipeline.clone(),
            spot_ok: pipeline.getattr(intern!(py, "_spot_ok"))?.cast_into()?,
            epochs: pipeline.getattr(intern!(py, "_epochs"))?.cast_into()?,
            conns: pipeline.getattr(intern!(py, "_conns"))?.cast_into()?,
            precisions: pipeline.getattr(intern!(py, "precisions"))?.cast_into()?,
            ack_depth: pipeline.getattr(intern!(py, "_ack_depth"))?.cast_into()?,
            mrows: pipeline.getattr(intern!(py, "_mrows"))?.cast_into()?,
            interval: pipeline
                .getattr(intern!(py, "checkpoint_interval_ns"))?
                .extract()?,
            cp_messages: pipeline
                .getattr(intern!(py, "checkpoint_messages"))?
                .extract()?,
            batch_rows: pipeline.getattr(intern!(py, "batch_rows"))?.extract()?,
        };
        let names = Names {
            book: intern!(py, "book").clone(),
            snapshot: intern!(py, "snapshot").clone(),
            resnapshot: intern!(py, "resnapshot").clone(),
            instrument: intern!(py, "instrument").clone(),
            inferred: intern!(py, "inferred").clone(),
            epoch_start: intern!(py, "epoch_start").clone(),
            interval: intern!(py, "interval").clone(),
            checksum_mismatch: intern!(py, "checksum_mismatch").clone(),
            crossed: intern!(py, "crossed").clone(),
        };
        let stop = stop.min(frames.len());
        let mut i = start;
        while i < stop {
            let frame = frames.get_item(i)?;
            match self.frame(py, &pipe, &names, &frame, out) {
                Ok(Step::NotMine) => return Ok((i, None, false)),
                Ok(Step::Done {
                    flush,
                    recv,
                    pending,
                }) => {
                    i += 1;
                    if flush {
                        return Ok((i, None, true));
                    }
                    if recv >= until_recv || pending >= until_rows {
                        break;
                    }
                }
                Err(err) => return Ok((i, Some(err), false)),
            }
        }
        Ok((i, None, false))
    }
}

impl SpotLane {
    fn sym<'py>(
        &mut self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<(Bound<'py, PyString>, Bound<'py, PyTuple>)> {
        if let Some(s) = self.symbols.get(name) {
            return Ok((s.name.bind(py).clone(), s.book_key.bind(py).clone()));
        }
        if self.symbols.len() >= SYMBOL_MEMO {
            self.symbols.clear();
        }
        let text = PyString::new(py, name);
        let key = PyTuple::new(py, [intern!(py, "book").clone(), text.clone()])?;
        self.symbols.insert(
            name.into(),
            Sym {
                name: text.clone().unbind(),
                book_key: key.clone().unbind(),
            },
        );
        Ok((text, key))
    }

    /// One frame (see [`SpotLane::feed`]).
    fn frame<'py>(
        &mut self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        frame: &Bound<'py, PyAny>,
        out: &Bound<'py, PyList>,
    ) -> PyResult<Step> {
        let stream = frame.getattr(intern!(py, "stream"))?;
        let is_spot = stream
            .cast::<PyString>()
            .map(|s| matches!(s.to_str(), Ok("spot" | "l3")))
            .unwrap_or(false);
        if !is_spot {
            return Ok(Step::NotMine);
        }
        let direction = frame.getattr(intern!(py, "direction"))?;
        if !direction
            .cast::<PyString>()
            .map(|s| matches!(s.to_str(), Ok("in")))
            .unwrap_or(false)
        {
            return Ok(Step::NotMine);
        }
        let Ok(recv) = frame.getattr(intern!(py, "recv_ns"))?.extract::<i64>() else {
            return Ok(Step::NotMine);
        };
        let payload = frame.getattr(intern!(py, "payload"))?;
        let Ok(payload) = payload.cast::<pyo3::types::PyBytes>() else {
            return Ok(Step::NotMine);
        };
        let decoded = spot::classify_reusing(
            payload.as_bytes(),
            DEFAULT_MAX_FRAME_BYTES,
            &mut self.scratch,
        );
        match decoded {
            Ok(spot::Frame::Book { snapshot, items }) => {
                let step = if items.len() == 1 {
                    self.l2(
                        py, pipe, names, frame, &stream, recv, snapshot, &items[0], out,
                    )
                } else {
                    Ok(Step::NotMine)
                };
                self.scratch.reuse_books(items);
                step
            }
            Ok(spot::Frame::Level3 { items, .. }) => {
                self.scratch.reuse_l3(items);
                Ok(Step::NotMine)
            }
            _ => Ok(Step::NotMine),
        }
    }

    /// `_l2` of the frame's one item, when the lane takes it.
    #[allow(clippy::too_many_arguments)]
    fn l2<'py>(
        &mut self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        frame: &Bound<'py, PyAny>,
        stream: &Bound<'py, PyAny>,
        recv: i64,
        snapshot: bool,
        item: &BookItem<'_, Level<'_>>,
        out: &Bound<'py, PyList>,
    ) -> PyResult<Step> {
        let (sym, key) = self.sym(py, &item.symbol)?;
        let ep = pipe.epochs.get_item(&key)?;
        // --- what the lane takes (no side effect before this point)
        let mut new_epoch: Option<(i64, u8, u8, bool)> = None;
        let mut bids = std::mem::take(&mut self.bids);
        let mut asks = std::mem::take(&mut self.asks);
        let ok = if snapshot {
            let known = pipe.precisions.get_item(&sym)?;
            let prec = match &known {
                Some(k) => k
                    .extract::<(i64, i64)>()
                    .ok()
                    .and_then(|(p, q)| Some((u8::try_from(p).ok()?, u8::try_from(q).ok()?, true))),
                None => {
                    let all = || item.bids.iter().chain(item.asks.iter());
                    match (
                        lane::infer_precision(all().map(|l| l.price)),
                        lane::infer_precision(all().map(|l| l.qty)),
                    ) {
                        (Some(p), Some(q)) => Some((p, q, false)),
                        _ => None,
                    }
                }
            };
            let ack = match pipe.ack_depth.get_item(&key)? {
                None => Some(None),
                Some(d) => d.extract::<i64>().ok().map(Some),
            };
            match (prec, ack) {
                (Some((pp, qp, known)), Some(ack))
                    if pp <= lane::MAX_PRECISION && qp <= lane::MAX_PRECISION =>
                {
                    let depth = lane::l2_depth(ack, item.bids.len(), item.asks.len());
                    new_epoch = Some((depth, pp, qp, known));
                    depth >= 1
                        && lane::l2_units(&item.bids, pp, qp, &mut bids)
                        && lane::l2_units(&item.asks, pp, qp, &mut asks)
                }
                _ => false,
            }
        } else {
            match &ep {
                Some(ep) => {
                    let book = ep.getattr(intern!(py, "book"))?;
                    match book.cast::<LaneL2Book>() {
                        Ok(b) => {
                            let b = b.borrow();
                            lane::l2_units(&item.bids, b.pp, b.qp, &mut bids)
                                && lane::l2_units(&item.asks, b.pp, b.qp, &mut asks)
                        }
                        Err(_) => false,
                    }
                }
                None => false,
            }
        };
        let step = if ok {
            self.l2_derive(
                py, pipe, names, frame, stream, recv, item, &sym, &key, ep, new_epoch, &bids,
                &asks, out,
            )
        } else {
            Ok(Step::NotMine)
        };
        self.bids = bids;
        self.asks = asks;
        step
    }

    /// The derivation of a frame whose `_l2` item the lane took (from `self.frames += 1` on).
    #[allow(clippy::too_many_arguments)]
    fn l2_derive<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        frame: &Bound<'py, PyAny>,
        stream: &Bound<'py, PyAny>,
        recv: i64,
        item: &BookItem<'_, Level<'_>>,
        sym: &Bound<'py, PyString>,
        key: &Bound<'py, PyTuple>,
        ep: Option<Bound<'py, PyAny>>,
        new_epoch: Option<(i64, u8, u8, bool)>,
        bids: &[(i64, i64)],
        asks: &[(i64, i64)],
        out: &Bound<'py, PyList>,
    ) -> PyResult<Step> {
        let p = &pipe.obj;
        add_attr(p, intern!(py, "frames"), 1)?;
        if pipe.spot_ok.contains(sym)?
            || p.call_method1(intern!(py, "_admit"), (frame, sym, intern!(py, "spot")))?
                .is_truthy()?
        {
            self.l2_item(
                py, pipe, names, frame, stream, recv, item, sym, key, ep, new_epoch, bids, asks,
                out,
            )?;
        }
        add_attr(p, intern!(py, "messages"), 1)?;
        p.setattr(intern!(py, "last_recv_ns"), recv)?;
        let pending: i64 = p.getattr(intern!(py, "_pending_rows"))?.extract()?;
        Ok(Step::Done {
            flush: pending >= pipe.batch_rows,
            recv,
            pending,
        })
    }

    /// `_l2` of an admitted symbol's item (from the liveness tick on).
    #[allow(clippy::too_many_arguments)]
    fn l2_item<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        frame: &Bound<'py, PyAny>,
        stream: &Bound<'py, PyAny>,
        recv: i64,
        item: &BookItem<'_, Level<'_>>,
        sym: &Bound<'py, PyString>,
        key: &Bound<'py, PyTuple>,
        ep: Option<Bound<'py, PyAny>>,
        new_epoch: Option<(i64, u8, u8, bool)>,
        bids: &[(i64, i64)],
        asks: &[(i64, i64)],
        out: &Bound<'py, PyList>,
    ) -> PyResult<()> {
        let p = &pipe.obj;
        let conn_id = frame.getattr(intern!(py, "conn_id"))?;
        // _tick_key
        self.tick_key(py, pipe, &conn_id, stream, sym, key, recv)?;
        let cols = p.getattr(intern!(py, "_book_cols"))?;
        let cols = cols.cast::<PyTuple>()?;
        let col = |i: usize| -> PyResult<Bound<'py, PyList>> {
            Ok(cols.get_item(i)?.cast_into::<PyList>()?)
        };
        let snapshot = new_epoch.is_some();
        let ep = if let Some((depth, pp, qp, known)) = new_epoch {
            if ep.is_some() {
                p.call_method1(
                    intern!(py, "_end_epoch"),
                    (key, &names.resnapshot, py.None(), recv),
                )?;
            }
            let ep = self.epoch_cls.bind(py).call1((
                recv,
                stream,
                &names.book,
                sym,
                &conn_id,
                &names.snapshot,
            ))?;
            ep.setattr(intern!(py, "depth"), depth)?;
            ep.setattr(intern!(py, "pp"), pp)?;
            ep.setattr(intern!(py, "qp"), qp)?;
            ep.setattr(
                intern!(py, "psource"),
                if known {
                    &names.instrument
                } else {
                    &names.inferred
                },
            )?;
            let book = self.l2_cls.bind(py).call1((sym, depth, pp, qp))?;
            ep.setattr(intern!(py, "book"), &book)?;
            ep
        } else {
            ep.ok_or_else(|| project_error(py, "BookError", "lane: no epoch".into()))?
        };
        let book = ep.getattr(intern!(py, "book"))?;
        let book = book.cast::<LaneL2Book>()?;
        let (side, price, qty) = (col(10)?, col(11)?, col(12)?);
        for (code, levels) in [(0, bids), (1, asks)] {
            for &(pu, qu) in levels {
                side.append(code)?;
                price.append(pu)?;
                qty.append(qu)?;
            }
        }
        let res = book
            .borrow_mut()
            .book
            .apply(snapshot, bids.iter().copied(), asks.iter().copied())
            .map_err(|e| project_error(py, "BookError", e.to_string()))?;
        if snapshot {
            pipe.epochs.set_item(key, &ep)?;
            p.call_method1(
                intern!(py, "_close_gap"),
                (&names.book, sym, recv, &names.resnapshot),
            )?;
        }
        let n = bids.len() + asks.len();
        let n_i = i64::try_from(n).unwrap_or(i64::MAX);
        if n > 0 {
            col(0)?.append(recv)?;
            col(1)?.append(item.ts_ns)?;
            col(2)?.append(ep.getattr(intern!(py, "symbol"))?)?;
            col(3)?.append(ep.getattr(intern!(py, "epoch"))?)?;
            col(4)?.append(&conn_id)?;
            col(5)?.append(if snapshot { 0 } else { 1 })?;
            col(6)?.append(ep.getattr(intern!(py, "pp"))?)?;
            col(7)?.append(ep.getattr(intern!(py, "qp"))?)?;
            col(8)?.append(item.checksum)?;
            col(9)?.append(n_i)?;
            let book_name = &names.book;
            let m = pipe
                .mrows
                .get_item(book_name)?
                .ok_or_else(|| project_error(py, "BookError", "lane: no book rows".into()))?;
            pipe.mrows.set_item(book_name, m.add(n_i)?)?;
            add_attr(p, intern!(py, "_pending_rows"), n_i)?;
            add_attr(&ep, intern!(py, "rows"), n_i)?;
        }
        add_attr(&ep, intern!(py, "messages"), 1)?;
        ep.setattr(intern!(py, "end_ns"), recv)?;
        let matched = item.checksum.map(|c| c == res.computed);
        match matched {
            Some(true) => {
                add_attr(&ep, intern!(py, "ok"), 1)?;
                add_attr(p, intern!(py, "checksums_ok"), 1)?;
            }
            Some(false) => {
                add_attr(&ep, intern!(py, "failed"), 1)?;
                add_attr(p, intern!(py, "checksums_failed"), 1)?;
            }
            None => {}
        }
        if matched != Some(false) && !res.crossed {
            if snapshot {
                p.call_method1(
                    intern!(py, "_checkpoint_row"),
                    (&ep, recv, &names.epoch_start),
                )?;
            } else {
                let last_cp: i64 = ep.getattr(intern!(py, "last_cp_ns"))?.extract()?;
                let mut due = recv.saturating_sub(last_cp) >= pipe.interval;
                if !due && pipe.cp_messages > 0 {
                    let msgs: i64 = ep.getattr(intern!(py, "messages"))?.extract()?;
                    let last: i64 = ep.getattr(intern!(py, "last_cp_msg"))?.extract()?;
                    due = msgs - last >= pipe.cp_messages;
                }
                if due {
                    p.call_method1(intern!(py, "_checkpoint_row"), (&ep, recv, &names.interval))?;
                }
            }
        } else {
            let reason = if matched == Some(false) {
                &names.checksum_mismatch
            } else {
                &names.crossed
            };
            p.call_method1(
                intern!(py, "_desync"),
                (
                    frame,
                    &names.book,
                    &ep,
                    reason,
                    item.checksum,
                    res.computed,
                    out,
                ),
            )?;
        }
        Ok(())
    }

    /// `Pipeline._tick_key` (the current minute of a known connection here; else `_tick`).
    #[allow(clippy::too_many_arguments)]
    fn tick_key<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        conn_id: &Bound<'py, PyAny>,
        stream: &Bound<'py, PyAny>,
        sym: &Bound<'py, PyString>,
        key: &Bound<'py, PyTuple>,
        recv: i64,
    ) -> PyResult<()> {
        let conn = pipe.conns.get_item(conn_id)?;
        let current = match &conn {
            Some(c) => {
                let minute: i64 = c.getattr(intern!(py, "minute"))?.extract()?;
                let until: i64 = c.getattr(intern!(py, "until"))?.extract()?;
                minute <= recv && recv < until
            }
            None => false,
        };
        let Some(conn) = conn.filter(|_| current) else {
            pipe.obj.call_method1(
                intern!(py, "_tick"),
                (conn_id, stream, key.get_item(0)?, sym, recv),
            )?;
            return Ok(());
        };
        let subs = conn.getattr(intern!(py, "subs"))?;
        let subs = subs.cast::<PyDict>()?;
        if !subs.contains(key)? {
            subs.set_item(key, recv)?;
        }
        let counts = conn.getattr(intern!(py, "counts"))?;
        let counts = counts.cast::<PyDict>()?;
        match counts.get_item(key)? {
            None => counts.set_item(key, PyList::new(py, [1, recv, recv])?)?,
            Some(c) => {
                let c = c.cast::<PyList>()?;
                c.set_item(0, c.get_item(0)?.add(1)?)?;
                c.set_item(2, recv)?;
            }
        }
        Ok(())
    }
}

/// Register the lane's classes in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LaneL2Book>()?;
    m.add_class::<SpotLane>()?;
    Ok(())
}
