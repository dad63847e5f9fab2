//! The binding of the pipeline's Spot v2 book lane: `recorder._core.SpotLane` derives runs of
//! `book` and `level3` frames straight into a `recorder.pipeline.Pipeline`'s buffers, and
//! `recorder._core.LaneL2Book` / `LaneL3Book` are the books it keeps in the pipeline's epochs.
//!
//! The lane does, per frame, exactly what `Pipeline.feed` -> `_spot` -> `_l2` / `_l3` do (same
//! order, same values appended to the same lists, same counters), with C-API dict/list/
//! attribute operations only on the common path; the rare events call the pipeline's own
//! methods (`_tick`, `_end_epoch`, `_close_gap`, `_checkpoint_row`, `_desync`, `flush`,
//! `_Epoch(...)`), so they stay identical by construction. A frame the lane does not take
//! (another stream or message, a decode reject, several items, an unadmitted symbol, no open
//! epoch, a book of the reference model, a token the reference spells or refuses itself, see
//! [`crate::lane`]) is left untouched and handed back: the reference derives it.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PySet, PyString, PyTuple};

use crate::l2::L2Book;
use crate::l3::{L3Book, L3Entry};
use crate::lane;
use crate::python::project_error;
use crate::spot::{self, BookItem, DEFAULT_MAX_FRAME_BYTES, Level, Order, Scratch, Token};

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

/// A Kraken spot level3 book of the pipeline's lane: the compiled book (orders under dense
/// handles, recycled by [`LaneL3Book::compact`]) plus the order ids, symbol and precisions.
/// `recorder.pipeline.lane.CoreL3Book` adds the reference book's checkpoint methods.
#[pyclass(name = "LaneL3Book", module = "recorder._core", subclass)]
pub struct LaneL3Book {
    book: L3Book,
    symbol: Py<PyString>,
    pp: u8,
    qp: u8,
    /// order id -> handle, and back (one shared allocation per id: a cut clones references)
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

/// Handles given out beyond this many per resting order (plus a floor) make
/// [`LaneL3Book::compact`] renumber the book.
const HANDLES_PER_ORDER: usize = 4;
const HANDLES_FLOOR: usize = 4096;

type OrderRow = (String, i64, i64, Option<i64>);

impl LaneL3Book {
    /// The handle of an order id (a new one for an id not seen since the last compaction).
    fn handle(&mut self, id: &str) -> u32 {
        if let Some(&h) = self.ids.get(id) {
            return h;
        }
        let h = u32::try_from(self.names.len()).unwrap_or(u32::MAX - 1);
        let name: Arc<str> = Arc::from(id);
        self.ids.insert(Arc::clone(&name), h);
        self.names.push(name);
        h
    }

    /// Renumber the resting orders densely when handles of departed orders pile up: the book
    /// is rebuilt from its orders (same levels, queues, timestamps and checksum), so handles
    /// and the handle index stay bounded by the live orders.
    fn compact(&mut self) {
        if self.names.len() <= HANDLES_PER_ORDER * self.book.len() + HANDLES_FLOOR {
            return;
        }
        let mut ids = HashMap::with_capacity(self.book.len());
        let mut names: Vec<Arc<str>> = Vec::with_capacity(self.book.len());
        let mut sides = [Vec::new(), Vec::new()];
        for (i, ask) in [false, true].into_iter().enumerate() {
            for o in self.book.orders(ask) {
                let Some(name) = self.names.get(o.order as usize) else {
                    continue;
                };
                let h = u32::try_from(names.len()).unwrap_or(u32::MAX - 1);
                ids.insert(Arc::clone(name), h);
                names.push(Arc::clone(name));
                sides[i].push(L3Entry {
                    event: 0,
                    order: h,
                    price: o.price,
                    qty: o.qty,
                    ts: o.ts,
                });
            }
        }
        let mut book = L3Book::new(self.book.depth(), u32::MAX);
        let [bids, asks] = sides;
        if book.apply(true, bids, asks).is_ok() {
            self.book = book;
            self.ids = ids;
            self.names = names;
        }
    }

    fn side_orders(&self, ask: bool) -> Vec<OrderRow> {
        self.book
            .orders(ask)
            .map(|o| {
                let id = self.names.get(o.order as usize).map_or("", |n| n);
                (id.to_owned(), o.price, o.qty, o.ts)
            })
            .collect()
    }

    /// The resting orders of one side with shared references to their ids (a cut's copy).
    fn side_refs(&self, ask: bool) -> Vec<CutOrder> {
        self.book
            .orders(ask)
            .map(|o| {
                let id = self
                    .names
                    .get(o.order as usize)
                    .map_or_else(|| Arc::from(""), Arc::clone);
                (id, o.price, o.qty, o.ts)
            })
            .collect()
    }
}

/// A resting order as a cut keeps it: `(order id, price units, qty units, ts_ns)`.
type CutOrder = (Arc<str>, i64, i64, Option<i64>);

/// A [`LaneL3Book`]'s resting orders copied at a commit's cut ([`LaneL3Book::cut`]): only
/// what a checkpoint needs (the orders in book order, ids shared with the book), so a cut
/// costs one pass over the live orders, not a copy of the book's indexes. Read-only; the
/// checkpoint methods of `recorder.pipeline.lane.CoreL3Book` read it as they read a book.
#[pyclass(name = "LaneL3Cut", module = "recorder._core", frozen)]
pub struct LaneL3Cut {
    symbol: Py<PyString>,
    depth: usize,
    pp: u8,
    qp: u8,
    bids: Vec<CutOrder>,
    asks: Vec<CutOrder>,
}

#[pymethods]
impl LaneL3Cut {
    /// The pair.
    #[getter]
    fn symbol(&self, py: Python<'_>) -> Py<PyString> {
        self.symbol.clone_ref(py)
    }

    /// The subscribed depth (price levels per side).
    #[getter]
    fn depth(&self) -> usize {
        self.depth
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

    /// Always true: only a ready book is cut.
    #[getter]
    fn ready(&self) -> bool {
        true
    }

    /// As [`LaneL3Book`]'s `side_orders`, at the cut.
    fn side_orders(&self, ask: bool) -> Vec<OrderRow> {
        let side = if ask { &self.asks } else { &self.bids };
        side.iter()
            .map(|(id, price, qty, ts)| (id.to_string(), *price, *qty, *ts))
            .collect()
    }
}

#[pymethods]
impl LaneL3Book {
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
        Ok(LaneL3Book {
            book: L3Book::new(depth, u32::MAX),
            symbol: symbol.unbind(),
            pp: precision_arg(py, "price_precision", price_precision)?,
            qp: precision_arg(py, "qty_precision", qty_precision)?,
            ids: HashMap::new(),
            names: Vec::new(),
        })
    }

    /// The pair.
    #[getter]
    fn symbol(&self, py: Python<'_>) -> Py<PyString> {
        self.symbol.clone_ref(py)
    }

    /// The subscribed depth (price levels per side).
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

    /// `(order_id, price_units, qty_units, ts_ns)` of one side (`ask`): best level first,
    /// each level in queue order.
    #[pyo3(name = "side_orders")]
    fn side_orders_py(&self, ask: bool) -> Vec<OrderRow> {
        self.side_orders(ask)
    }

    /// Kraken CRC32 of the book.
    fn checksum(&mut self) -> u32 {
        self.book.checksum()
    }

    /// Resting orders (both sides).
    fn __len__(&self) -> usize {
        self.book.len()
    }

    /// Order handles given out since the book was made or last renumbered (bounded by the
    /// resting orders, see `compact`).
    #[getter]
    fn handles(&self) -> usize {
        self.names.len()
    }

    /// A copy of this book (a cheap Rust clone: a commit's cut keeps it while this one goes
    /// on).
    fn copy(&self, py: Python<'_>) -> LaneL3Book {
        LaneL3Book {
            book: self.book.clone(),
            symbol: self.symbol.clone_ref(py),
            pp: self.pp,
            qp: self.qp,
            ids: self.ids.clone(),
            names: self.names.clone(),
        }
    }

    /// The resting orders as they are now, for a commit's cut (see [`LaneL3Cut`]); raises
    /// `BookError` for a book that is not ready (it has no valid state to cut).
    fn cut(&self, py: Python<'_>) -> PyResult<LaneL3Cut> {
        if !self.book.ready() {
            return Err(project_error(
                py,
                "BookError",
                format!("{}: no valid book to checkpoint", self.symbol.bind(py)),
            ));
        }
        Ok(LaneL3Cut {
            symbol: self.symbol.clone_ref(py),
            depth: self.book.depth(),
            pp: self.pp,
            qp: self.qp,
            bids: self.side_refs(false),
            asks: self.side_refs(true),
        })
    }

    /// Replace the book with these orders, `(order_id, price_units, qty_units, ts_ns)` per
    /// side in queue order (a restore from a validated checkpoint).
    fn load(&mut self, py: Python<'_>, bids: Vec<OrderRow>, asks: Vec<OrderRow>) -> PyResult<()> {
        self.ids.clear();
        self.names.clear();
        let mut sides = [Vec::new(), Vec::new()];
        for (i, orders) in [bids, asks].into_iter().enumerate() {
            for (id, price, qty, ts) in orders {
                let order = self.handle(&id);
                sides[i].push(L3Entry {
                    event: 0,
                    order,
                    price,
                    qty,
                    ts,
                });
            }
        }
        let [b, a] = sides;
        self.book
            .apply(true, b, a)
            .map(|_| ())
            .map_err(|e| project_error(py, "BookError", e.to_string()))
    }
}

/// A symbol's Python objects, made once.
struct Sym {
    name: Py<PyString>,
    book_key: Py<PyTuple>,
    l3_key: Py<PyTuple>,
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

impl<'py> Pipe<'py> {
    fn of(py: Python<'py>, pipeline: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Pipe {
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
        })
    }
}

/// Per-run strings.
struct Names<'py> {
    book: Bound<'py, PyString>,
    level3: Bound<'py, PyString>,
    snapshot: Bound<'py, PyString>,
    resnapshot: Bound<'py, PyString>,
    instrument: Bound<'py, PyString>,
    inferred: Bound<'py, PyString>,
    epoch_start: Bound<'py, PyString>,
    interval: Bound<'py, PyString>,
    checksum_mismatch: Bound<'py, PyString>,
    crossed: Bound<'py, PyString>,
}

/// `obj.name += delta` (Python int arithmetic).
fn add_attr(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>, delta: i64) -> PyResult<()> {
    let v = obj.getattr(name)?.add(delta)?;
    obj.setattr(name, v)
}

/// A new epoch's `(depth, price precision, qty precision, precisions from the instrument
/// list)`.
type NewEpoch = (i64, u8, u8, bool);

/// The Spot v2 book lane of one pipeline (see the module documentation).
#[pyclass(name = "SpotLane", module = "recorder._core")]
pub struct SpotLane {
    scratch: Scratch,
    symbols: HashMap<Box<str>, Sym>,
    bids: Vec<(i64, i64)>,
    asks: Vec<(i64, i64)>,
    epoch_cls: Py<PyAny>,
    l2_cls: Py<PyAny>,
    l3_cls: Py<PyAny>,
}

#[pymethods]
impl SpotLane {
    /// `epoch_cls`: the pipeline's `_Epoch`; `l2_cls` / `l3_cls`: the book classes of new
    /// `book` / `level3` epochs (subclasses of `LaneL2Book` / `LaneL3Book`).
    #[new]
    fn new(epoch_cls: Py<PyAny>, l2_cls: Py<PyAny>, l3_cls: Py<PyAny>) -> Self {
        SpotLane {
            scratch: Scratch::default(),
            symbols: HashMap::new(),
            bids: Vec::new(),
            asks: Vec::new(),
            epoch_cls,
            l2_cls,
            l3_cls,
        }
    }

    /// Derive `frames[start:stop]` into `pipeline` while they are the lane's; signals go to
    /// `out`. Stops after a frame that left the pipeline's rows due for its sink, that left at
    /// least `until_rows` rows pending or whose `recv_ns` is at least `until_recv`. Returns
    /// `(next, error, flush, foreign)`: `frames[next]` is the first frame not derived, unless
    /// `error` is set: then the derivation of `frames[next]` raised it part-way (the caller
    /// handles it as `Pipeline.feed` handles an exception); `flush`: the caller must call
    /// `Pipeline.flush` now (as `Pipeline.feed` does after a frame); `foreign`: the lane
    /// stopped at `frames[next]` because it is not the lane's (the reference derives it).
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
    ) -> PyResult<(usize, Option<PyErr>, bool, bool)> {
        let Ok(pipe) = Pipe::of(py, pipeline) else {
            // settings beyond i64 (or not a pipeline): every frame is the reference's
            return Ok((start, None, false, true));
        };
        let names = Names {
            book: intern!(py, "book").clone(),
            level3: intern!(py, "level3").clone(),
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
                Ok(Step::NotMine) => return Ok((i, None, false, true)),
                Ok(Step::Done {
                    flush,
                    recv,
                    pending,
                }) => {
                    i += 1;
                    if flush {
                        return Ok((i, None, true, false));
                    }
                    if recv >= until_recv || pending >= until_rows {
                        break;
                    }
                }
                Err(err) => return Ok((i, Some(err), false, false)),
            }
        }
        Ok((i, None, false, false))
    }
}

impl SpotLane {
    /// The symbol's string and its `("book", symbol)` / `("level3", symbol)` keys.
    fn sym<'py>(
        &mut self,
        py: Python<'py>,
        name: &str,
    ) -> PyResult<(
        Bound<'py, PyString>,
        Bound<'py, PyTuple>,
        Bound<'py, PyTuple>,
    )> {
        if let Some(s) = self.symbols.get(name) {
            return Ok((
                s.name.bind(py).clone(),
                s.book_key.bind(py).clone(),
                s.l3_key.bind(py).clone(),
            ));
        }
        if self.symbols.len() >= SYMBOL_MEMO {
            self.symbols.clear();
        }
        let text = PyString::new(py, name);
        let book = PyTuple::new(py, [intern!(py, "book").clone(), text.clone()])?;
        let l3 = PyTuple::new(py, [intern!(py, "level3").clone(), text.clone()])?;
        self.symbols.insert(
            name.into(),
            Sym {
                name: text.clone().unbind(),
                book_key: book.clone().unbind(),
                l3_key: l3.clone().unbind(),
            },
        );
        Ok((text, book, l3))
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
        let is = |v: &Bound<'py, PyAny>, ok: &[&str]| {
            v.cast::<PyString>()
                .ok()
                .and_then(|s| s.to_str().ok().map(|s| ok.contains(&s)))
                .unwrap_or(false)
        };
        if !is(&stream, &["spot", "l3"]) || !is(&frame.getattr(intern!(py, "direction"))?, &["in"])
        {
            return Ok(Step::NotMine);
        }
        let Ok(recv) = frame.getattr(intern!(py, "recv_ns"))?.extract::<i64>() else {
            return Ok(Step::NotMine);
        };
        let payload = frame.getattr(intern!(py, "payload"))?;
        let Ok(payload) = payload.cast::<PyBytes>() else {
            return Ok(Step::NotMine);
        };
        let at = Frame {
            obj: frame,
            stream: &stream,
            recv,
        };
        match spot::classify_reusing(
            payload.as_bytes(),
            DEFAULT_MAX_FRAME_BYTES,
            &mut self.scratch,
        ) {
            Ok(spot::Frame::Book { snapshot, items }) => {
                let step = match items.as_slice() {
                    [item] => self.l2(py, pipe, names, &at, snapshot, item, out),
                    _ => Ok(Step::NotMine),
                };
                self.scratch.reuse_books(items);
                step
            }
            Ok(spot::Frame::Level3 { snapshot, items }) => {
                let step = match items.as_slice() {
                    [item] => self.l3(py, pipe, names, &at, snapshot, item, out),
                    _ => Ok(Step::NotMine),
                };
                self.scratch.reuse_l3(items);
                step
            }
            _ => Ok(Step::NotMine),
        }
    }

    /// A snapshot's precisions: the instrument list's, else the most decimals written in it.
    fn precisions<'a>(
        pipe: &Pipe<'_>,
        sym: &Bound<'_, PyString>,
        prices: impl Iterator<Item = Token<'a>>,
        qtys: impl Iterator<Item = Token<'a>>,
    ) -> PyResult<Option<(u8, u8, bool)>> {
        let prec = match pipe.precisions.get_item(sym)? {
            Some(k) => k
                .extract::<(i64, i64)>()
                .ok()
                .and_then(|(p, q)| Some((u8::try_from(p).ok()?, u8::try_from(q).ok()?, true))),
            None => match (lane::infer_precision(prices), lane::infer_precision(qtys)) {
                (Some(p), Some(q)) => Some((p, q, false)),
                _ => None,
            },
        };
        Ok(prec.filter(|&(p, q, _)| p <= lane::MAX_PRECISION && q <= lane::MAX_PRECISION))
    }

    /// `_l2` of the frame's one item, when the lane takes it (nothing is changed before it
    /// is known to be the lane's).
    #[allow(clippy::too_many_arguments)]
    fn l2<'py>(
        &mut self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        at: &Frame<'_, 'py>,
        snapshot: bool,
        item: &BookItem<'_, Level<'_>>,
        out: &Bound<'py, PyList>,
    ) -> PyResult<Step> {
        let (sym, key, _) = self.sym(py, &item.symbol)?;
        let ep = pipe.epochs.get_item(&key)?;
        let mut new_epoch: Option<NewEpoch> = None;
        let mut bids = std::mem::take(&mut self.bids);
        let mut asks = std::mem::take(&mut self.asks);
        let ok = if snapshot {
            let all = || item.bids.iter().chain(item.asks.iter());
            let prec = Self::precisions(pipe, &sym, all().map(|l| l.price), all().map(|l| l.qty))?;
            let ack = match pipe.ack_depth.get_item(&key)? {
                None => Some(None),
                Some(d) => d.extract::<i64>().ok().map(Some),
            };
            match (prec, ack) {
                (Some((pp, qp, known)), Some(ack)) => {
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
                Some(ep) => match ep.getattr(intern!(py, "book"))?.cast::<LaneL2Book>() {
                    Ok(b) => {
                        let b = b.borrow();
                        lane::l2_units(&item.bids, b.pp, b.qp, &mut bids)
                            && lane::l2_units(&item.asks, b.pp, b.qp, &mut asks)
                    }
                    Err(_) => false,
                },
                None => false,
            }
        };
        let step = if ok {
            let it = Item {
                sym: &sym,
                key: &key,
                ep,
                new_epoch,
                checksum: item.checksum,
            };
            self.derive_frame(py, pipe, at, &sym, || {
                self.l2_item(py, pipe, names, at, it, item.ts_ns, &bids, &asks, out)
            })
        } else {
            Ok(Step::NotMine)
        };
        self.bids = bids;
        self.asks = asks;
        step
    }

    /// `_l3` of the frame's one item, when the lane takes it (as [`SpotLane::l2`]).
    #[allow(clippy::too_many_arguments)]
    fn l3<'py>(
        &mut self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        at: &Frame<'_, 'py>,
        snapshot: bool,
        item: &BookItem<'_, Order<'_>>,
        out: &Bound<'py, PyList>,
    ) -> PyResult<Step> {
        let (sym, _, key) = self.sym(py, &item.symbol)?;
        let ep = pipe.epochs.get_item(&key)?;
        let mut new_epoch: Option<NewEpoch> = None;
        let mut bids = std::mem::take(&mut self.bids);
        let mut asks = std::mem::take(&mut self.asks);
        let ok = if snapshot {
            let all = || item.bids.iter().chain(item.asks.iter());
            let prec = Self::precisions(pipe, &sym, all().map(|o| o.price), all().map(|o| o.qty))?;
            // `self._ack_depth.get(key) or 10`
            let depth = match pipe.ack_depth.get_item(&key)? {
                None => Some(10),
                Some(d) => d.extract::<i64>().ok().map(|d| if d == 0 { 10 } else { d }),
            };
            match (prec, depth) {
                (Some((pp, qp, known)), Some(depth)) if depth >= 1 => {
                    new_epoch = Some((depth, pp, qp, known));
                    lane::l3_units(&item.bids, true, pp, qp, &mut bids)
                        && lane::l3_units(&item.asks, true, pp, qp, &mut asks)
                }
                _ => false,
            }
        } else {
            match &ep {
                Some(ep) => match ep.getattr(intern!(py, "book"))?.cast::<LaneL3Book>() {
                    Ok(b) => {
                        let b = b.borrow();
                        lane::l3_units(&item.bids, false, b.pp, b.qp, &mut bids)
                            && lane::l3_units(&item.asks, false, b.pp, b.qp, &mut asks)
                    }
                    Err(_) => false,
                },
                None => false,
            }
        };
        let step = if ok {
            let it = Item {
                sym: &sym,
                key: &key,
                ep,
                new_epoch,
                checksum: item.checksum,
            };
            self.derive_frame(py, pipe, at, &sym, || {
                self.l3_item(py, pipe, names, at, it, item, &bids, &asks, out)
            })
        } else {
            Ok(Step::NotMine)
        };
        self.bids = bids;
        self.asks = asks;
        step
    }

    /// A frame whose item the lane took, as `Pipeline._feed` -> `_spot` derive it:
    /// `self.frames += 1`, the symbol admitted (`_admit` for a new one), `derive_item`, then
    /// `self.messages += 1` and `last_recv_ns`.
    fn derive_frame<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        at: &Frame<'_, 'py>,
        sym: &Bound<'py, PyString>,
        derive_item: impl FnOnce() -> PyResult<()>,
    ) -> PyResult<Step> {
        let p = &pipe.obj;
        add_attr(p, intern!(py, "frames"), 1)?;
        if pipe.spot_ok.contains(sym)?
            || p.call_method1(intern!(py, "_admit"), (at.obj, sym, intern!(py, "spot")))?
                .is_truthy()?
        {
            derive_item()?;
        }
        add_attr(p, intern!(py, "messages"), 1)?;
        p.setattr(intern!(py, "last_recv_ns"), at.recv)?;
        let pending: i64 = p.getattr(intern!(py, "_pending_rows"))?.extract()?;
        Ok(Step::Done {
            flush: pending >= pipe.batch_rows,
            recv: at.recv,
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
        at: &Frame<'_, 'py>,
        it: Item<'_, 'py>,
        ts_ns: Option<i64>,
        bids: &[(i64, i64)],
        asks: &[(i64, i64)],
        out: &Bound<'py, PyList>,
    ) -> PyResult<()> {
        let p = &pipe.obj;
        let conn_id = at.obj.getattr(intern!(py, "conn_id"))?;
        self.tick_key(py, pipe, &conn_id, at, it.sym, it.key)?;
        let cols = p.getattr(intern!(py, "_book_cols"))?;
        let cols = cols.cast::<PyTuple>()?;
        let col = |i: usize| -> PyResult<Bound<'py, PyList>> {
            Ok(cols.get_item(i)?.cast_into::<PyList>()?)
        };
        let snapshot = it.new_epoch.is_some();
        let ep = self.epoch(
            py,
            pipe,
            names,
            &names.book,
            at,
            &conn_id,
            &it,
            &self.l2_cls,
        )?;
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
            self.opened(py, pipe, names, &names.book, at, &it, &ep)?;
        }
        let n = bids.len() + asks.len();
        if n > 0 {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            col(0)?.append(at.recv)?;
            col(1)?.append(ts_ns)?;
            col(2)?.append(ep.getattr(intern!(py, "symbol"))?)?;
            col(3)?.append(ep.getattr(intern!(py, "epoch"))?)?;
            col(4)?.append(&conn_id)?;
            col(5)?.append(if snapshot { 0 } else { 1 })?;
            col(6)?.append(ep.getattr(intern!(py, "pp"))?)?;
            col(7)?.append(ep.getattr(intern!(py, "qp"))?)?;
            col(8)?.append(it.checksum)?;
            col(9)?.append(n)?;
            count_rows(py, pipe, &names.book, &ep, n)?;
        }
        finish_item(
            py,
            pipe,
            names,
            &names.book,
            at,
            &ep,
            snapshot,
            it.checksum,
            (res.computed, res.crossed),
            out,
        )
    }

    /// `_l3` of an admitted symbol's item (from the liveness tick on).
    #[allow(clippy::too_many_arguments)]
    fn l3_item<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        at: &Frame<'_, 'py>,
        it: Item<'_, 'py>,
        item: &BookItem<'_, Order<'_>>,
        bids: &[(i64, i64)],
        asks: &[(i64, i64)],
        out: &Bound<'py, PyList>,
    ) -> PyResult<()> {
        let p = &pipe.obj;
        let conn_id = at.obj.getattr(intern!(py, "conn_id"))?;
        self.tick_key(py, pipe, &conn_id, at, it.sym, it.key)?;
        let cols = p.getattr(intern!(py, "_l3_cols"))?;
        let cols = cols.cast::<PyTuple>()?;
        let col = |i: usize| -> PyResult<Bound<'py, PyList>> {
            Ok(cols.get_item(i)?.cast_into::<PyList>()?)
        };
        let snapshot = it.new_epoch.is_some();
        let ep = self.epoch(
            py,
            pipe,
            names,
            &names.level3,
            at,
            &conn_id,
            &it,
            &self.l3_cls,
        )?;
        let book = ep.getattr(intern!(py, "book"))?;
        let book = book.cast::<LaneL3Book>()?;
        let res = {
            let mut book = book.borrow_mut();
            book.compact();
            let (ts, event, side, id, price, qty) =
                (col(8)?, col(9)?, col(10)?, col(11)?, col(12)?, col(13)?);
            let mut entries = [Vec::new(), Vec::new()];
            for (code, orders, units) in [(0usize, &item.bids, bids), (1, &item.asks, asks)] {
                for (o, &(pu, qu)) in orders.iter().zip(units) {
                    let ev = if snapshot { 0 } else { o.event };
                    ts.append(o.ts_ns)?;
                    event.append(ev)?;
                    side.append(code)?;
                    id.append(PyString::new(py, &o.order_id))?;
                    price.append(pu)?;
                    qty.append(qu)?;
                    let order = book.handle(&o.order_id);
                    entries[code].push(L3Entry {
                        event: ev,
                        order,
                        price: pu,
                        qty: qu,
                        ts: Some(o.ts_ns),
                    });
                }
            }
            let [eb, ea] = entries;
            book.book
                .apply(snapshot, eb, ea)
                .map_err(|e| project_error(py, "BookError", e.to_string()))?
        };
        if snapshot {
            self.opened(py, pipe, names, &names.level3, at, &it, &ep)?;
        }
        let n = bids.len() + asks.len();
        if n > 0 {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            col(0)?.append(at.recv)?;
            col(1)?.append(ep.getattr(intern!(py, "symbol"))?)?;
            col(2)?.append(ep.getattr(intern!(py, "epoch"))?)?;
            col(3)?.append(&conn_id)?;
            col(4)?.append(ep.getattr(intern!(py, "pp"))?)?;
            col(5)?.append(ep.getattr(intern!(py, "qp"))?)?;
            col(6)?.append(it.checksum)?;
            col(7)?.append(n)?;
            count_rows(py, pipe, &names.level3, &ep, n)?;
        }
        finish_item(
            py,
            pipe,
            names,
            &names.level3,
            at,
            &ep,
            snapshot,
            it.checksum,
            (res.computed, res.crossed),
            out,
        )
    }

    /// The item's epoch: the open one, or for a snapshot a new one (ending the open one,
    /// `_end_epoch(key, "resnapshot")`) with a new book of `book_cls`.
    #[allow(clippy::too_many_arguments)]
    fn epoch<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        channel: &Bound<'py, PyString>,
        at: &Frame<'_, 'py>,
        conn_id: &Bound<'py, PyAny>,
        it: &Item<'_, 'py>,
        book_cls: &Py<PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Some((depth, pp, qp, known)) = it.new_epoch else {
            return it
                .ep
                .clone()
                .ok_or_else(|| project_error(py, "BookError", "lane: no open epoch".into()));
        };
        if it.ep.is_some() {
            pipe.obj.call_method1(
                intern!(py, "_end_epoch"),
                (it.key, &names.resnapshot, py.None(), at.recv),
            )?;
        }
        let ep = self.epoch_cls.bind(py).call1((
            at.recv,
            at.stream,
            channel,
            it.sym,
            conn_id,
            &names.snapshot,
        ))?;
        ep.setattr(intern!(py, "depth"), depth)?;
        ep.setattr(intern!(py, "pp"), pp)?;
        ep.setattr(intern!(py, "qp"), qp)?;
        let source = if known {
            &names.instrument
        } else {
            &names.inferred
        };
        ep.setattr(intern!(py, "psource"), source)?;
        let book = book_cls.bind(py).call1((it.sym, depth, pp, qp))?;
        ep.setattr(intern!(py, "book"), &book)?;
        Ok(ep)
    }

    /// A snapshot's new epoch is open: `_epochs[key] = ep`, then the key's gap closed.
    #[allow(clippy::too_many_arguments)]
    fn opened<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        names: &Names<'py>,
        channel: &Bound<'py, PyString>,
        at: &Frame<'_, 'py>,
        it: &Item<'_, 'py>,
        ep: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        pipe.epochs.set_item(it.key, ep)?;
        pipe.obj.call_method1(
            intern!(py, "_close_gap"),
            (channel, it.sym, at.recv, &names.resnapshot),
        )?;
        Ok(())
    }

    /// `Pipeline._tick_key` (the current minute of a known connection here; else `_tick`).
    fn tick_key<'py>(
        &self,
        py: Python<'py>,
        pipe: &Pipe<'py>,
        conn_id: &Bound<'py, PyAny>,
        at: &Frame<'_, 'py>,
        sym: &Bound<'py, PyString>,
        key: &Bound<'py, PyTuple>,
    ) -> PyResult<()> {
        let recv = at.recv;
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
                (conn_id, at.stream, key.get_item(0)?, sym, recv),
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

/// The frame being derived: the Python object and what the lane read of it.
struct Frame<'a, 'py> {
    obj: &'a Bound<'py, PyAny>,
    stream: &'a Bound<'py, PyAny>,
    recv: i64,
}

/// An item the lane took: its symbol and key, the open epoch, the new epoch of a snapshot
/// and the message's checksum.
struct Item<'a, 'py> {
    sym: &'a Bound<'py, PyString>,
    key: &'a Bound<'py, PyTuple>,
    ep: Option<Bound<'py, PyAny>>,
    new_epoch: Option<NewEpoch>,
    checksum: Option<u32>,
}

/// A message's `n` rows counted: `_mrows[channel]`, `_pending_rows`, `ep.rows`.
fn count_rows<'py>(
    py: Python<'py>,
    pipe: &Pipe<'py>,
    channel: &Bound<'py, PyString>,
    ep: &Bound<'py, PyAny>,
    n: i64,
) -> PyResult<()> {
    let m = pipe
        .mrows
        .get_item(channel)?
        .ok_or_else(|| project_error(py, "BookError", "lane: no row count".into()))?;
    pipe.mrows.set_item(channel, m.add(n)?)?;
    add_attr(&pipe.obj, intern!(py, "_pending_rows"), n)?;
    add_attr(ep, intern!(py, "rows"), n)
}

/// The end of `_l2` / `_l3` for an applied item: the epoch's and the pipeline's counters, then
/// the epoch-start or interval checkpoint, or the desync; `checksum`: the message's;
/// `(computed, crossed)`: the book's after it.
#[allow(clippy::too_many_arguments)]
fn finish_item<'py>(
    py: Python<'py>,
    pipe: &Pipe<'py>,
    names: &Names<'py>,
    channel: &Bound<'py, PyString>,
    at: &Frame<'_, 'py>,
    ep: &Bound<'py, PyAny>,
    snapshot: bool,
    checksum: Option<u32>,
    (computed, crossed): (u32, bool),
    out: &Bound<'py, PyList>,
) -> PyResult<()> {
    let p = &pipe.obj;
    let recv = at.recv;
    add_attr(ep, intern!(py, "messages"), 1)?;
    ep.setattr(intern!(py, "end_ns"), recv)?;
    let matched = checksum.map(|c| c == computed);
    match matched {
        Some(true) => {
            add_attr(ep, intern!(py, "ok"), 1)?;
            add_attr(p, intern!(py, "checksums_ok"), 1)?;
        }
        Some(false) => {
            add_attr(ep, intern!(py, "failed"), 1)?;
            add_attr(p, intern!(py, "checksums_failed"), 1)?;
        }
        None => {}
    }
    if matched != Some(false) && !crossed {
        let due = snapshot || {
            let last_cp: i64 = ep.getattr(intern!(py, "last_cp_ns"))?.extract()?;
            recv.saturating_sub(last_cp) >= pipe.interval
                || (pipe.cp_messages > 0 && {
                    let msgs: i64 = ep.getattr(intern!(py, "messages"))?.extract()?;
                    let last: i64 = ep.getattr(intern!(py, "last_cp_msg"))?.extract()?;
                    msgs - last >= pipe.cp_messages
                })
        };
        if due {
            let reason = if snapshot {
                &names.epoch_start
            } else {
                &names.interval
            };
            p.call_method1(intern!(py, "_checkpoint_row"), (ep, recv, reason))?;
        }
    } else {
        let reason = if matched == Some(false) {
            &names.checksum_mismatch
        } else {
            &names.crossed
        };
        p.call_method1(
            intern!(py, "_desync"),
            (at.obj, channel, ep, reason, checksum, computed, out),
        )?;
    }
    Ok(())
}

/// Register the lane's classes in the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LaneL2Book>()?;
    m.add_class::<LaneL3Book>()?;
    m.add_class::<LaneL3Cut>()?;
    m.add_class::<SpotLane>()?;
    Ok(())
}
