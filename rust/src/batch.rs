//! Batched decode + book + checksum of Spot v2 `book` and `level3` frames.
//!
//! [`SpotBooks`] holds, across batches, what the pipeline (`recorder/pipeline/core.py`,
//! `_l2`/`_l3`) learns from a stream of frames: each pair's precisions (from `instrument`
//! frames, or given explicitly), each (channel, symbol)'s subscribed depth (from subscribe
//! acks), and one L2 and one level3 book per symbol. [`SpotBooks::feed`] takes a batch of
//! frames and returns one verdict per frame in compact columns ([`Verdicts`]):
//!
//! * [`OK`]: every book item of the frame applied and its checksum matched;
//! * [`UNCHECKED`]: applied, but the message carries no checksum;
//! * [`MISMATCH`]: the computed checksum differs from Kraken's (`expected`, `computed`);
//! * [`CROSSED`]: the checksum matched but the book is crossed;
//! * [`REJECT`]: a decode reject (reason codes of [`crate::spot`]), `apply_error` (a book
//!   refuses the message), or `update_before_snapshot`;
//! * [`SKIPPED`]: recognised and not a book message (heartbeat, status, pong, acks, trade,
//!   ticker, ohlc, instrument), or a book frame with no item.
//!
//! The semantics are the pipeline's: a snapshot starts a new book (depth from the ack, else the
//! smallest Kraken depth holding the snapshot's levels for `book` and 10 for `level3`;
//! precisions from the instrument channel, else the most decimals written in the snapshot); a
//! mismatch, a crossed book or a refused message ends the book, so the updates that follow are
//! `update_before_snapshot` until the next snapshot; a successful unsubscribe ends it too.
//! A frame's verdict is that of its first item that is not OK/UNCHECKED, else its last item's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;

use crate::decimal::{Decimal, MAX_SCALE, NumberError};
use crate::l2::L2Book;
use crate::l3::{L3Book, L3Entry};
use crate::spot::{
    self, APPLY_ERROR, Ack, BookItem, DEFAULT_MAX_FRAME_BYTES, Frame, Level, Order, PairPrecision,
    Reject, UPDATE_BEFORE_SNAPSHOT,
};

/// Frame verdicts (the `verdict` column).
pub const OK: u8 = 0;
/// Kraken's checksum differs from the book's.
pub const MISMATCH: u8 = 1;
/// Rejected (see the `reason` column).
pub const REJECT: u8 = 2;
/// Not a book message, or a book message with no item.
pub const SKIPPED: u8 = 3;
/// Applied; the message carries no checksum.
pub const UNCHECKED: u8 = 4;
/// Applied, checksum matched, but the book is crossed.
pub const CROSSED: u8 = 5;

/// Channel codes (the `channel` column).
pub const CH_NONE: u8 = 0;
/// `book`.
pub const CH_BOOK: u8 = 1;
/// `level3`.
pub const CH_LEVEL3: u8 = 2;
/// `instrument`.
pub const CH_INSTRUMENT: u8 = 3;
/// A subscribe/unsubscribe ack.
pub const CH_ACK: u8 = 4;
/// Any other recognised frame.
pub const CH_OTHER: u8 = 5;

/// Message kind codes (the `kind` column).
pub const SNAPSHOT: u8 = 0;
/// An update message.
pub const UPDATE: u8 = 1;
/// Not a book message.
pub const NO_KIND: u8 = 2;

/// No symbol (the `symbol` column).
pub const NO_SYMBOL: u32 = u32::MAX;
/// No timestamp (the `ts_ns` column).
pub const NO_TS: i64 = i64::MIN;

/// A fast keyed hash for short ids (Kraken order ids, symbols): 8 bytes per multiply, keyed
/// per map from the standard library's random state so crafted collisions cannot be planned.
#[derive(Debug, Clone, Copy)]
struct IdHasher {
    hash: u64,
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.hash = (self.hash ^ u64::from_le_bytes(word))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let mut word = [0u8; 8];
        let rest = chunks.remainder();
        word[..rest.len()].copy_from_slice(rest);
        self.hash = (self.hash ^ u64::from_le_bytes(word) ^ (bytes.len() as u64))
            .wrapping_mul(K)
            .rotate_left(29);
    }

    fn finish(&self) -> u64 {
        let h = self.hash;
        (h ^ (h >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ (h >> 29)
    }
}

/// Builds [`IdHasher`]s with one random key per map.
#[derive(Debug, Clone, Copy)]
struct IdHash {
    key: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        IdHash {
            key: RandomState::new().build_hasher().finish(),
        }
    }
}

impl BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { hash: self.key }
    }
}

type IdMap<V> = HashMap<Box<str>, V, IdHash>;
/// Order ids: one shared allocation per id, for the map key and the handle's name.
type OrderIds = HashMap<Arc<str>, u32, IdHash>;

/// Kraken's `book` depths: a snapshot without an ack gets the smallest one holding it.
const KRAKEN_DEPTHS: [usize; 5] = [10, 25, 100, 500, 1000];

/// Per-frame verdict columns of one batch (all the same length), plus reject details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub verdict: Vec<u8>,
    pub channel: Vec<u8>,
    pub kind: Vec<u8>,
    pub reason: Vec<u8>,
    pub symbol: Vec<u32>,
    pub expected: Vec<u32>,
    pub computed: Vec<u32>,
    pub ts_ns: Vec<i64>,
    /// `(frame index, detail)` of every rejected frame.
    pub details: Vec<(u32, String)>,
}

impl Verdicts {
    fn with_capacity(n: usize) -> Self {
        Verdicts {
            verdict: Vec::with_capacity(n),
            channel: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            reason: Vec::with_capacity(n),
            symbol: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
            computed: Vec::with_capacity(n),
            ts_ns: Vec::with_capacity(n),
            details: Vec::new(),
        }
    }

    fn push(&mut self, index: usize, channel: u8, kind: u8, v: ItemVerdict) {
        self.verdict.push(v.verdict);
        self.channel.push(channel);
        self.kind.push(kind);
        self.reason.push(v.reason);
        self.symbol.push(v.symbol);
        self.expected.push(v.expected);
        self.computed.push(v.computed);
        self.ts_ns.push(v.ts_ns);
        if let Some(detail) = v.detail {
            self.details
                .push((u32::try_from(index).unwrap_or(u32::MAX), detail));
        }
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.verdict.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.verdict.is_empty()
    }
}

#[derive(Debug, Clone)]
struct ItemVerdict {
    verdict: u8,
    reason: u8,
    symbol: u32,
    expected: u32,
    computed: u32,
    ts_ns: i64,
    detail: Option<String>,
}

impl ItemVerdict {
    fn simple(verdict: u8) -> Self {
        ItemVerdict {
            verdict,
            reason: 0,
            symbol: NO_SYMBOL,
            expected: 0,
            computed: 0,
            ts_ns: NO_TS,
            detail: None,
        }
    }

    fn reject(reason: u8, detail: String, symbol: u32, ts_ns: i64) -> Self {
        ItemVerdict {
            verdict: REJECT,
            reason,
            symbol,
            expected: 0,
            computed: 0,
            ts_ns,
            detail: Some(detail),
        }
    }

    fn from_reject(r: Reject) -> Self {
        ItemVerdict::reject(r.reason, r.detail, NO_SYMBOL, NO_TS)
    }

    fn settled(&self) -> bool {
        self.verdict == OK || self.verdict == UNCHECKED
    }
}

#[derive(Debug)]
struct L2State {
    book: L2Book,
    pp: u8,
    qp: u8,
}

#[derive(Debug)]
struct L3State {
    book: L3Book,
    pp: u8,
    qp: u8,
    ids: OrderIds,
    names: Vec<Arc<str>>,
}

impl L3State {
    fn intern(&mut self, id: &str) -> Result<u32, String> {
        if let Some(&handle) = self.ids.get(id) {
            return Ok(handle);
        }
        let handle = u32::try_from(self.names.len())
            .ok()
            .filter(|&h| h < u32::MAX - 1)
            .ok_or_else(|| "too many level3 order ids".to_owned())?;
        let name: Arc<str> = Arc::from(id);
        self.ids.insert(Arc::clone(&name), handle);
        self.names.push(name);
        Ok(handle)
    }

    /// Forget the ids of orders no longer in the book (deleted, truncated): re-intern the
    /// live ones densely and rebuild the book from its own orders (same queues, same CRC).
    fn compact(&mut self) {
        if self.ids.len() <= 2 * self.book.len() + 65_536 {
            return;
        }
        let mut ids = OrderIds::with_capacity_and_hasher(self.book.len(), IdHash::default());
        let mut names: Vec<Arc<str>> = Vec::with_capacity(self.book.len());
        let mut sides: [Vec<L3Entry>; 2] = [Vec::new(), Vec::new()];
        for (ask, side) in sides.iter_mut().enumerate() {
            for o in self.book.orders(ask == 1) {
                let name = self
                    .names
                    .get(o.order as usize)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(""));
                let handle = u32::try_from(names.len()).unwrap_or(u32::MAX);
                ids.insert(Arc::clone(&name), handle);
                names.push(name);
                side.push(L3Entry {
                    event: 0,
                    order: handle,
                    price: o.price,
                    qty: o.qty,
                    ts: o.ts,
                });
            }
        }
        let [bids, asks] = sides;
        let mut book = L3Book::new(self.book.depth(), u32::MAX - 1);
        if book.apply(true, bids, asks).is_ok() {
            self.book = book;
            self.ids = ids;
            self.names = names;
        }
    }
}

/// Books and learned metadata of a Spot v2 stream, persisting across batches.
#[derive(Debug)]
pub struct SpotBooks {
    max_frame_bytes: usize,
    symbols: Vec<Box<str>>,
    symbol_ids: IdMap<u32>,
    explicit: HashMap<Box<str>, (i64, i64)>,
    learned: HashMap<Box<str>, (i64, i64)>,
    ack_depth: HashMap<(u8, u32), i64>,
    l2: Vec<Option<L2State>>,
    l3: Vec<Option<L3State>>,
    /// Vectors reused from frame to frame (decoded frames, level3 entries).
    scratch: spot::Scratch,
    entries: [Vec<L3Entry>; 2],
}

impl Default for SpotBooks {
    fn default() -> Self {
        SpotBooks::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

fn number_detail(field: &str, token: &str, err: &NumberError) -> String {
    let shown: String = token.chars().take(48).collect();
    format!("NumberError: `{field}` {shown:?}: {err}")
}

fn units(token: spot::Token<'_>, precision: u8, field: &str) -> Result<i64, String> {
    token
        .decimal()
        .and_then(|d| d.to_units(precision))
        .map_err(|e| number_detail(field, token.0, &e))
}

fn scale_of(token: spot::Token<'_>, field: &str) -> Result<i64, String> {
    token
        .decimal()
        .map(|d: Decimal| i64::from(d.scale))
        .map_err(|e| number_detail(field, token.0, &e))
}

fn precision_u8(value: i64, name: &str) -> Result<u8, String> {
    u8::try_from(value)
        .ok()
        .filter(|&p| p <= MAX_SCALE)
        .ok_or_else(|| format!("BookError: {name} {value} outside 0..={MAX_SCALE}"))
}

fn depth_usize(value: i64) -> Result<usize, String> {
    usize::try_from(value)
        .ok()
        .filter(|&d| d >= 1)
        .ok_or_else(|| format!("BookError: depth must be a positive int, got {value}"))
}

fn l2_depth(ack: Option<i64>, bids: usize, asks: usize) -> Result<usize, String> {
    if let Some(depth) = ack.filter(|&d| d != 0) {
        return depth_usize(depth);
    }
    let n = bids.max(asks).max(1);
    Ok(KRAKEN_DEPTHS.iter().copied().find(|&d| n <= d).unwrap_or(n))
}

fn checked(
    symbol: u32,
    ts_ns: i64,
    checksum: Option<u32>,
    computed: u32,
    crossed: bool,
) -> ItemVerdict {
    let (verdict, expected) = match checksum {
        Some(c) if c != computed => (MISMATCH, c),
        Some(c) if crossed => (CROSSED, c),
        Some(c) => (OK, c),
        None if crossed => (CROSSED, 0),
        None => (UNCHECKED, 0),
    };
    ItemVerdict {
        verdict,
        reason: 0,
        symbol,
        expected,
        computed,
        ts_ns,
        detail: None,
    }
}

impl SpotBooks {
    /// Empty state; frames longer than `max_frame_bytes` are rejected unread.
    pub fn new(max_frame_bytes: usize) -> Self {
        SpotBooks {
            max_frame_bytes,
            symbols: Vec::new(),
            symbol_ids: IdMap::default(),
            explicit: HashMap::new(),
            learned: HashMap::new(),
            ack_depth: HashMap::new(),
            l2: Vec::new(),
            l3: Vec::new(),
            scratch: spot::Scratch::default(),
            entries: [Vec::new(), Vec::new()],
        }
    }

    /// Use these precisions for `symbol`'s next snapshots (over the instrument channel's).
    pub fn set_precision(&mut self, symbol: &str, price_precision: i64, qty_precision: i64) {
        self.explicit
            .insert(symbol.into(), (price_precision, qty_precision));
    }

    /// Symbols by id (the `symbol` column indexes this).
    pub fn symbols(&self) -> &[Box<str>] {
        &self.symbols
    }

    /// Whether (`level3` if `level3`, else `book`) `symbol` has a valid book.
    pub fn has_book(&self, level3: bool, symbol: &str) -> bool {
        let Some(&id) = self.symbol_ids.get(symbol) else {
            return false;
        };
        if level3 {
            matches!(self.l3.get(id as usize), Some(Some(_)))
        } else {
            matches!(self.l2.get(id as usize), Some(Some(_)))
        }
    }

    /// The L2 book of `symbol` (None without a valid one).
    pub fn l2_book(&self, symbol: &str) -> Option<&L2Book> {
        let &id = self.symbol_ids.get(symbol)?;
        self.l2.get(id as usize)?.as_ref().map(|s| &s.book)
    }

    /// The level3 book of `symbol` and its order-id names by handle.
    pub fn l3_book(&self, symbol: &str) -> Option<(&L3Book, &[Arc<str>])> {
        let &id = self.symbol_ids.get(symbol)?;
        self.l3
            .get(id as usize)?
            .as_ref()
            .map(|s| (&s.book, s.names.as_slice()))
    }

    fn intern(&mut self, symbol: &str) -> u32 {
        if let Some(&id) = self.symbol_ids.get(symbol) {
            return id;
        }
        let id = u32::try_from(self.symbols.len()).unwrap_or(NO_SYMBOL - 1);
        self.symbols.push(symbol.into());
        self.symbol_ids.insert(symbol.into(), id);
        self.l2.push(None);
        self.l3.push(None);
        id
    }

    fn precisions(&self, symbol: &str) -> Option<(i64, i64)> {
        self.explicit
            .get(symbol)
            .or_else(|| self.learned.get(symbol))
            .copied()
    }

    /// Decode and apply a batch; one verdict per frame, in order.
    pub fn feed<'f, I>(&mut self, frames: I) -> Verdicts
    where
        I: IntoIterator<Item = &'f [u8]>,
        I::IntoIter: ExactSizeIterator,
    {
        let frames = frames.into_iter();
        let mut out = Verdicts::with_capacity(frames.len());
        for (index, frame) in frames.enumerate() {
            self.one(index, frame, &mut out);
        }
        out
    }

    fn one(&mut self, index: usize, frame: &[u8], out: &mut Verdicts) {
        // a book frame's vectors come from the scratch and go back to it once applied
        match spot::classify_reusing(frame, self.max_frame_bytes, &mut self.scratch) {
            Err(r) => out.push(index, CH_NONE, NO_KIND, ItemVerdict::from_reject(r)),
            Ok(Frame::Skipped) => out.push(index, CH_OTHER, NO_KIND, ItemVerdict::simple(SKIPPED)),
            Ok(Frame::Ack(ack)) => {
                self.ack(&ack);
                out.push(index, CH_ACK, NO_KIND, ItemVerdict::simple(SKIPPED));
            }
            Ok(Frame::Instrument { snapshot, pairs }) => {
                self.instrument(snapshot, pairs);
                out.push(index, CH_INSTRUMENT, NO_KIND, ItemVerdict::simple(SKIPPED));
            }
            Ok(Frame::Book { snapshot, items }) => {
                let mut verdict = ItemVerdict::simple(SKIPPED);
                for item in &items {
                    let v = self.l2_item(snapshot, item);
                    if verdict.verdict == SKIPPED || verdict.settled() {
                        verdict = v;
                    }
                }
                out.push(index, CH_BOOK, kind_code(snapshot), verdict);
                self.scratch.reuse_books(items);
            }
            Ok(Frame::Level3 { snapshot, items }) => {
                let mut verdict = ItemVerdict::simple(SKIPPED);
                for item in &items {
                    let v = self.l3_item(snapshot, item);
                    if verdict.verdict == SKIPPED || verdict.settled() {
                        verdict = v;
                    }
                }
                out.push(index, CH_LEVEL3, kind_code(snapshot), verdict);
                self.scratch.reuse_l3(items);
            }
        }
    }

    fn ack(&mut self, ack: &Ack) {
        if !ack.success {
            return;
        }
        let Some(symbol) = ack.symbol.as_deref() else {
            return;
        };
        let channel = match ack.channel.as_str() {
            "book" => CH_BOOK,
            "level3" => CH_LEVEL3,
            _ => return,
        };
        let id = self.intern(symbol);
        if ack.subscribe {
            if let Some(depth) = ack.depth.filter(|&d| d != 0) {
                self.ack_depth.insert((channel, id), depth);
            }
        } else if channel == CH_BOOK {
            if let Some(slot) = self.l2.get_mut(id as usize) {
                *slot = None;
            }
        } else if let Some(slot) = self.l3.get_mut(id as usize) {
            *slot = None;
        }
    }

    fn instrument(&mut self, snapshot: bool, pairs: Vec<PairPrecision>) {
        if snapshot {
            self.learned.clear();
        }
        for p in pairs {
            self.learned.insert(
                p.symbol.into_boxed_str(),
                (p.price_precision, p.qty_precision),
            );
        }
    }

    fn l2_item(&mut self, snapshot: bool, item: &BookItem<'_, Level<'_>>) -> ItemVerdict {
        let id = self.intern(&item.symbol);
        let ts = item.ts_ns.unwrap_or(NO_TS);
        let slot = id as usize;
        let state = if snapshot {
            if let Some(s) = self.l2.get_mut(slot) {
                *s = None;
            }
            match self.l2_snapshot_state(id, item) {
                Ok(state) => state,
                Err(detail) => return ItemVerdict::reject(APPLY_ERROR, detail, id, ts),
            }
        } else {
            match self.l2.get_mut(slot).and_then(Option::take) {
                Some(state) => state,
                None => {
                    return ItemVerdict::reject(
                        UPDATE_BEFORE_SNAPSHOT,
                        "book update without a valid snapshot".to_owned(),
                        id,
                        ts,
                    );
                }
            }
        };
        let mut state = state;
        // levels are scaled as the book takes them; the first bad token stops its side and is
        // reported as the message's apply_error (the book is then dropped, as in the pipeline)
        let failed: RefCell<Option<String>> = RefCell::new(None);
        let (pp, qp) = (state.pp, state.qp);
        let applied = state.book.apply(
            snapshot,
            scaled(&item.bids, pp, qp, &failed),
            scaled(&item.asks, pp, qp, &failed),
        );
        if let Some(detail) = failed.into_inner() {
            return ItemVerdict::reject(APPLY_ERROR, detail, id, ts);
        }
        let outcome = match applied {
            Ok(o) => o,
            Err(e) => {
                return ItemVerdict::reject(APPLY_ERROR, format!("BookError: {e}"), id, ts);
            }
        };
        let v = checked(id, ts, item.checksum, outcome.computed, outcome.crossed);
        if v.settled() {
            if let Some(s) = self.l2.get_mut(slot) {
                *s = Some(state);
            }
        }
        v
    }

    fn l2_snapshot_state(
        &self,
        id: u32,
        item: &BookItem<'_, Level<'_>>,
    ) -> Result<L2State, String> {
        let depth = l2_depth(
            self.ack_depth.get(&(CH_BOOK, id)).copied(),
            item.bids.len(),
            item.asks.len(),
        )?;
        let (pp, qp) = match self.precisions(&item.symbol) {
            Some(p) => p,
            None => {
                let mut pp = 0;
                for l in item.bids.iter().chain(&item.asks) {
                    pp = pp.max(scale_of(l.price, "price")?);
                }
                let mut qp = 0;
                for l in item.bids.iter().chain(&item.asks) {
                    qp = qp.max(scale_of(l.qty, "qty")?);
                }
                (pp, qp)
            }
        };
        Ok(L2State {
            book: L2Book::new(depth),
            pp: precision_u8(pp, "price_precision")?,
            qp: precision_u8(qp, "qty_precision")?,
        })
    }

    fn l3_item(&mut self, snapshot: bool, item: &BookItem<'_, Order<'_>>) -> ItemVerdict {
        let id = self.intern(&item.symbol);
        let ts = item.ts_ns.unwrap_or(NO_TS);
        let slot = id as usize;
        let state = if snapshot {
            if let Some(s) = self.l3.get_mut(slot) {
                *s = None;
            }
            match self.l3_snapshot_state(id, item) {
                Ok(state) => state,
                Err(detail) => return ItemVerdict::reject(APPLY_ERROR, detail, id, ts),
            }
        } else {
            match self.l3.get_mut(slot).and_then(Option::take) {
                Some(state) => state,
                None => {
                    return ItemVerdict::reject(
                        UPDATE_BEFORE_SNAPSHOT,
                        "level3 update without a valid snapshot".to_owned(),
                        id,
                        ts,
                    );
                }
            }
        };
        let mut state = state;
        // both sides are converted before any is applied (entry vectors reused across frames)
        let [mut bids, mut asks] = std::mem::take(&mut self.entries);
        let converted = l3_entries(&mut state, &item.bids, &mut bids)
            .and_then(|()| l3_entries(&mut state, &item.asks, &mut asks));
        let applied = match converted {
            Ok(()) => state
                .book
                .apply(snapshot, bids.drain(..), asks.drain(..))
                .map_err(|e| format!("BookError: {e}")),
            Err(detail) => Err(detail),
        };
        bids.clear();
        asks.clear();
        self.entries = [bids, asks];
        let outcome = match applied {
            Ok(o) => o,
            Err(detail) => return ItemVerdict::reject(APPLY_ERROR, detail, id, ts),
        };
        let v = checked(id, ts, item.checksum, outcome.computed, outcome.crossed);
        if v.settled() {
            state.compact();
            if let Some(s) = self.l3.get_mut(slot) {
                *s = Some(state);
            }
        }
        v
    }

    fn l3_snapshot_state(
        &self,
        id: u32,
        item: &BookItem<'_, Order<'_>>,
    ) -> Result<L3State, String> {
        let depth = match self.ack_depth.get(&(CH_LEVEL3, id)).copied() {
            Some(d) => depth_usize(d)?,
            None => 10,
        };
        let (pp, qp) = match self.precisions(&item.symbol) {
            Some(p) => p,
            None => {
                let mut pp = 0;
                for o in item.bids.iter().chain(&item.asks) {
                    pp = pp.max(scale_of(o.price, "limit_price")?);
                }
                let mut qp = 0;
                for o in item.bids.iter().chain(&item.asks) {
                    qp = qp.max(scale_of(o.qty, "order_qty")?);
                }
                (pp, qp)
            }
        };
        Ok(L3State {
            book: L3Book::new(depth, u32::MAX - 1),
            pp: precision_u8(pp, "price_precision")?,
            qp: precision_u8(qp, "qty_precision")?,
            ids: OrderIds::default(),
            names: Vec::new(),
        })
    }
}

fn kind_code(snapshot: bool) -> u8 {
    if snapshot { SNAPSHOT } else { UPDATE }
}

/// `(price, qty)` units of `levels`, stopping at the first token that does not scale (its
/// detail goes to `failed`).
fn scaled<'s, 'a>(
    levels: &'s [Level<'a>],
    pp: u8,
    qp: u8,
    failed: &'s RefCell<Option<String>>,
) -> impl Iterator<Item = (i64, i64)> + 's {
    levels.iter().map_while(move |l| {
        let pair = units(l.price, pp, "price").and_then(|p| Ok((p, units(l.qty, qp, "qty")?)));
        match pair {
            Ok(pair) => Some(pair),
            Err(detail) => {
                failed.borrow_mut().get_or_insert(detail);
                None
            }
        }
    })
}

/// Append the entries of `orders` to `out`, order ids interned.
fn l3_entries(
    state: &mut L3State,
    orders: &[Order<'_>],
    out: &mut Vec<L3Entry>,
) -> Result<(), String> {
    out.reserve(orders.len());
    for o in orders {
        let price = units(o.price, state.pp, "limit_price")?;
        let qty = units(o.qty, state.qp, "order_qty")?;
        let order = state.intern(&o.order_id)?;
        out.push(L3Entry {
            event: o.event,
            order,
            price,
            qty,
            ts: Some(o.ts_ns),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTRUMENT: &str = r#"{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD","price_precision":1,"qty_precision":8}]}}"#;
    const SNAPSHOT: &str = r#"{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":29430.2,"qty":0.18967538},{"price":29429.6,"qty":0.00011621},{"price":29427.4,"qty":0.001},{"price":29426.7,"qty":4.0},{"price":29425.7,"qty":0.67945399},{"price":29423.5,"qty":0.67950478},{"price":29422.1,"qty":0.16314267},{"price":29421.8,"qty":0.06797895},{"price":29421.7,"qty":0.23401846},{"price":29421.5,"qty":0.28639276}],"asks":[{"price":29430.3,"qty":8.25215653},{"price":29430.4,"qty":2.55637606},{"price":29430.5,"qty":0.2997598},{"price":29430.9,"qty":2.56473216},{"price":29431.0,"qty":0.00011662},{"price":29431.1,"qty":0.001},{"price":29432.3,"qty":0.0241},{"price":29432.4,"qty":0.02210682},{"price":29432.5,"qty":3.39761477},{"price":29433.1,"qty":0.01021497}],"checksum":2785033588}]}"#;
    const UPDATE1: &str = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[{"price":29431.1,"qty":0.0},{"price":29433.3,"qty":0.8},{"price":29430.6,"qty":0.001}],"checksum":3547452596,"timestamp":"2023-07-30T15:29:58.343415Z"}]}"#;
    const UPDATE2: &str = r#"{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[{"price":29430.3,"qty":8.25182177}],"checksum":3111681483,"timestamp":"2023-07-30T15:30:00.029286Z"}]}"#;

    fn feed(books: &mut SpotBooks, frames: &[&str]) -> Verdicts {
        books.feed(frames.iter().map(|f| f.as_bytes()))
    }

    #[test]
    fn real_capture_prefix_verifies_across_batches() {
        let mut books = SpotBooks::default();
        let v = feed(&mut books, &[INSTRUMENT, SNAPSHOT, UPDATE1]);
        assert_eq!(v.verdict, vec![SKIPPED, OK, OK]);
        assert_eq!(v.channel, vec![CH_INSTRUMENT, CH_BOOK, CH_BOOK]);
        assert_eq!(v.kind, vec![NO_KIND, super::SNAPSHOT, UPDATE]);
        assert_eq!(v.expected[2], 3_547_452_596);
        assert_eq!(v.computed[2], 3_547_452_596);
        assert_eq!(v.ts_ns[1], NO_TS);
        assert_eq!(v.ts_ns[2], 1_690_730_998_343_415_000);
        assert_eq!(books.symbols()[v.symbol[1] as usize].as_ref(), "BTC/USD");
        // the next batch continues the same book
        let v = feed(&mut books, &[UPDATE2, r#"{"channel":"heartbeat"}"#]);
        assert_eq!(v.verdict, vec![OK, SKIPPED]);
        assert_eq!(books.l2_book("BTC/USD").map(L2Book::depth), Some(10));
    }

    #[test]
    fn inferred_precision_also_verifies_this_capture() {
        // no instrument frame: precisions inferred from the snapshot's tokens (1 and 8)
        let mut books = SpotBooks::default();
        let v = feed(&mut books, &[SNAPSHOT, UPDATE1, UPDATE2]);
        assert_eq!(v.verdict, vec![OK, OK, OK]);
    }

    #[test]
    fn mismatch_ends_the_book_until_the_next_snapshot() {
        let mut books = SpotBooks::default();
        let bad = UPDATE1.replace("3547452596", "3547452597");
        let v = feed(
            &mut books,
            &[INSTRUMENT, SNAPSHOT, &bad, UPDATE2, SNAPSHOT, UPDATE1],
        );
        assert_eq!(v.verdict, vec![SKIPPED, OK, MISMATCH, REJECT, OK, OK]);
        assert_eq!(
            (v.expected[2], v.computed[2]),
            (3_547_452_597, 3_547_452_596)
        );
        assert_eq!(v.reason[3], UPDATE_BEFORE_SNAPSHOT);
        assert_eq!(v.details.len(), 1);
        assert_eq!(v.details[0].0, 3);
    }

    #[test]
    fn ack_depth_and_unsubscribe() {
        let mut books = SpotBooks::default();
        let ack = r#"{"method":"subscribe","result":{"channel":"book","depth":25,"symbol":"BTC/USD"},"success":true}"#;
        let unsub = r#"{"method":"unsubscribe","result":{"channel":"book","depth":25,"symbol":"BTC/USD"},"success":true}"#;
        let v = feed(&mut books, &[ack, INSTRUMENT, SNAPSHOT, unsub, UPDATE1]);
        assert_eq!(v.verdict, vec![SKIPPED, SKIPPED, OK, SKIPPED, REJECT]);
        assert_eq!(v.channel[0], CH_ACK);
        feed(&mut books, &[SNAPSHOT]);
        assert_eq!(books.l2_book("BTC/USD").map(L2Book::depth), Some(25));
    }

    #[test]
    fn refused_messages_are_apply_errors() {
        let mut books = SpotBooks::default();
        books.set_precision("BTC/USD", 1, 8);
        let too_fine = UPDATE2.replace("8.25182177", "8.251821771");
        let v = feed(&mut books, &[SNAPSHOT, &too_fine, UPDATE2]);
        assert_eq!(v.verdict, vec![OK, REJECT, REJECT]);
        assert_eq!(v.reason[1], APPLY_ERROR);
        assert_eq!(v.reason[2], UPDATE_BEFORE_SNAPSHOT);
        let negative = SNAPSHOT.replace("4.0", "-4.0");
        let v = feed(&mut books, &[&negative]);
        assert_eq!((v.verdict[0], v.reason[0]), (REJECT, APPLY_ERROR));
        let huge = SNAPSHOT.replace("4.0", "99999999999999999999.0");
        let v = feed(&mut books, &[&huge]);
        assert_eq!((v.verdict[0], v.reason[0]), (REJECT, APPLY_ERROR));
    }

    #[test]
    fn level3_guide_snapshot_and_updates() {
        let order = |id: &str, p: &str, q: &str| {
            format!(
                r#"{{"order_id":"{id}","limit_price":{p},"order_qty":{q},"timestamp":"2024-01-08T00:00:00.000000001Z"}}"#
            )
        };
        let (bids, asks) = (
            crate::l3::guide_vectors::GUIDE_BIDS,
            crate::l3::guide_vectors::GUIDE_ASKS,
        );
        let side = |raw: &[(&str, &str)], prefix: &str| {
            raw.iter()
                .enumerate()
                .map(|(i, (p, q))| order(&format!("{prefix}{i}"), p, q))
                .collect::<Vec<_>>()
                .join(",")
        };
        let snapshot = format!(
            r#"{{"channel":"level3","type":"snapshot","data":[{{"symbol":"BTC/USD","checksum":1063832831,"bids":[{}],"asks":[{}]}}]}}"#,
            side(&bids, "B"),
            side(&asks, "A")
        );
        let mut books = SpotBooks::default();
        let v = feed(&mut books, &[&snapshot]);
        assert_eq!(v.details, vec![]);
        assert_eq!(
            (v.expected[0], v.computed[0]),
            (1_063_832_831, 1_063_832_831)
        );
        assert_eq!(v.verdict, vec![OK]);
        assert_eq!(v.channel, vec![CH_LEVEL3]);
        let (book, _) = books.l3_book("BTC/USD").unwrap();
        assert_eq!(book.len(), 35);
        let computed = v.computed[0];
        // delete and re-add of the only order of the 10th bid level: same book, same checksum;
        // the delete alone changes it
        let update = |events: &[&str], checksum: u32| {
            let entries: Vec<String> = events.iter().map(|e| format!(
                r#"{{"event":"{e}","order_id":"B20","limit_price":44901.9,"order_qty":0.00088982,"timestamp":"2024-01-08T00:00:01Z"}}"#
            )).collect();
            format!(
                r#"{{"channel":"level3","type":"update","data":[{{"symbol":"BTC/USD","checksum":{checksum},"bids":[{}],"asks":[]}}]}}"#,
                entries.join(",")
            )
        };
        let v = feed(
            &mut books,
            &[
                &update(&["delete", "add"], computed),
                &update(&["delete"], computed),
            ],
        );
        assert_eq!(v.verdict, vec![OK, MISMATCH]);
    }

    #[test]
    fn l3_ids_are_compacted() {
        let mut books = SpotBooks::default();
        books.set_precision("X/Y", 0, 0);
        let order = |event: &str, id: u32, price: u32| {
            format!(
                r#"{{"event":"{event}","order_id":"O{id}","limit_price":{price},"order_qty":1,"timestamp":"2024-01-08T00:00:00Z"}}"#
            )
        };
        let snap = r#"{"channel":"level3","type":"snapshot","data":[{"symbol":"X/Y","bids":[{"order_id":"keep","limit_price":5,"order_qty":2,"timestamp":"2024-01-08T00:00:00Z"}],"asks":[]}]}"#;
        feed(&mut books, &[snap]);
        let mut frames = Vec::new();
        for id in 0..70_000u32 {
            frames.push(format!(
                r#"{{"channel":"level3","type":"update","data":[{{"symbol":"X/Y","bids":[{},{}],"asks":[]}}]}}"#,
                order("add", id, 4),
                order("delete", id, 4)
            ));
        }
        let v = books.feed(frames.iter().map(|f| f.as_bytes()));
        assert!(v.verdict.iter().all(|&x| x == UNCHECKED));
        let (book, names) = books.l3_book("X/Y").unwrap();
        assert!(names.len() < 70_000);
        assert_eq!(book.len(), 1);
        let ids: Vec<_> = book
            .orders(false)
            .map(|o| names[o.order as usize].as_ref().to_owned())
            .collect();
        assert_eq!(ids, vec!["keep".to_owned()]);
    }

    #[test]
    fn garbage_is_rejected_never_panics() {
        let mut books = SpotBooks::default();
        let mut frames: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\xff".to_vec(),
            b"{".to_vec(),
            b"null".to_vec(),
            br#"{"channel":"book","type":"update","data":{}}"#.to_vec(),
            br#"{"channel":"book","type":"snapshot","data":[{"symbol":"A/B","bids":[{"price":"1e99999","qty":1}],"asks":[]}]}"#.to_vec(),
            br#"{"channel":"level3","type":"snapshot","data":[{"symbol":"A/B","bids":[{"order_id":"x","limit_price":"abc","order_qty":1,"timestamp":"2024-01-08T00:00:00Z"}],"asks":[]}]}"#.to_vec(),
        ];
        // every truncation of a real frame
        for cut in 0..SNAPSHOT.len() {
            frames.push(SNAPSHOT.as_bytes()[..cut].to_vec());
        }
        let v = books.feed(frames.iter().map(Vec::as_slice));
        assert!(v.verdict.iter().all(|&x| x == REJECT));
        assert_eq!(v.details.len(), frames.len());
    }
}
