//! FIX market data into books: batches of whole FIX 4.4 messages decoded by the codec
//! ([`crate::fix`]) and applied to per-symbol L2 ([`L2Book`]) or level3 ([`L3Book`]) books.
//!
//! One [`FixBooks`] serves one market-data session: L2 (Kraken's port 4000, one entry per side
//! and price) or L3 (port 4005, one entry per order, MDEntryID 278 = order id). Per message:
//!
//! * `35=W` (MarketDataSnapshotFullRefresh) replaces the symbol's book. Precisions are the
//!   subscribed ones ([`FixBooks::subscribe`]) or else the most decimals written in the
//!   snapshot; the depth is the subscribed one or else unbounded (1000, Kraken's largest,
//!   for L2). After each message each side is truncated to the depth, as the WebSocket books.
//! * `35=X` (MarketDataIncrementalRefresh) applies its entries in order. 279 MDUpdateAction
//!   0 new / 1 change / 2 delete; 269 MDEntryType 0 bid / 1 offer, and 2 trade, which is
//!   counted and does not touch the book. L2 entries are keyed by side and price (Kraken's L2
//!   MDEntryID is `O` + the price; when an id has that form it must name the entry's price);
//!   L3 entries by MDEntryID, each order keeping its queue place while its price stays.
//! * Every other valid message (admin, 35=Y, ...) is [`SKIPPED`].
//!
//! Verdicts (one per message, compact columns in [`FixVerdicts`]): [`OK`] (applied and the
//! optional 5041 ChecksumOrderBook matched), [`UNCHECKED`] (applied, no 5041), [`MISMATCH`]
//! (5041 differs from the book's Kraken CRC32), [`REJECT`] with a reason code ([`REASONS`]):
//! a codec reject, a message that is not exactly one message, an update without a valid
//! snapshot, a number that is not exact at the book's precision, a new entry that already
//! exists, a change or delete of an unknown entry, a crossed book, ... A rejected or
//! mismatching message ends the symbol's book: the updates that follow are
//! `update_before_snapshot` until the next W (the session should resubscribe). Entries are
//! checked against the book before it is touched. No input panics.
//!
//! Numbers are exact: the codec's [`Decimal`] (mantissa and scale as written) scaled to the
//! book's precision, never a float.

use std::collections::HashMap;

use crate::decimal::{Decimal, MAX_SCALE, NumberError, parse_decimal};
use crate::error::BookError;
use crate::fix::{self, MdEntry, Message};
use crate::l2::L2Book;
use crate::l3::{self, L3Book, L3Entry};

/// Applied; 5041 present and equal to the book's checksum.
pub const OK: u8 = 0;
/// 5041 differs from the book's checksum (the book is dropped).
pub const MISMATCH: u8 = 1;
/// Rejected (see the reason column).
pub const REJECT: u8 = 2;
/// A valid message that carries no book data (admin, MarketDataRequestReject, ...).
pub const SKIPPED: u8 = 3;
/// Applied; the message carries no 5041.
pub const UNCHECKED: u8 = 4;

/// Reason codes (the `reason` column indexes this; 0 = none). The codec's codes first.
pub const REASONS: [&str; 23] = [
    "",
    "garbage",
    "body_length",
    "checksum",
    "too_long",
    "malformed",
    "unknown_msg_type",
    "missing_field",
    "bad_field",
    "duplicate_field",
    "bad_number",
    "group_too_large",
    "group_mismatch",
    "incomplete",
    "trailing_bytes",
    "update_before_snapshot",
    "precision",
    "unknown_entry",
    "duplicate_entry",
    "entry_id_mismatch",
    "bad_entry",
    "crossed",
    "apply_error",
];

const R_INCOMPLETE: u8 = 13;
const R_TRAILING: u8 = 14;
const R_NO_SNAPSHOT: u8 = 15;
const R_PRECISION: u8 = 16;
const R_UNKNOWN_ENTRY: u8 = 17;
const R_DUPLICATE_ENTRY: u8 = 18;
const R_ID_MISMATCH: u8 = 19;
const R_BAD_ENTRY: u8 = 20;
const R_CROSSED: u8 = 21;
const R_APPLY_ERROR: u8 = 22;

/// No symbol (the `symbol` column).
pub const NO_SYMBOL: u32 = u32::MAX;
/// No MsgSeqNum (the `seq_num` column).
pub const NO_SEQ: u64 = u64::MAX;

/// L2 depth when none was subscribed: Kraken's largest L2 MarketDepth.
pub const DEFAULT_L2_DEPTH: usize = 1000;

fn codec_reason(code: &str) -> u8 {
    REASONS
        .iter()
        .position(|&r| r == code)
        .and_then(|i| u8::try_from(i).ok())
        .filter(|&i| i > 0 && i < R_INCOMPLETE)
        .unwrap_or(R_APPLY_ERROR)
}

/// Per-message verdict columns of one batch (all the same length), plus reject details.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixVerdicts {
    pub verdict: Vec<u8>,
    /// MsgType (35) when it is one byte, else 0.
    pub msg_type: Vec<u8>,
    pub reason: Vec<u8>,
    pub symbol: Vec<u32>,
    pub seq_num: Vec<u64>,
    /// Book entries applied (0 unless applied).
    pub entries: Vec<u32>,
    /// Trade entries (269=2) of an applied message.
    pub trades: Vec<u32>,
    /// 5041 as sent (0 without).
    pub expected: Vec<u32>,
    /// The book's Kraken CRC32 after the message (0 unless applied).
    pub computed: Vec<u32>,
    /// `(message index, detail)` of every rejected message.
    pub details: Vec<(u32, String)>,
}

impl FixVerdicts {
    fn with_capacity(n: usize) -> Self {
        FixVerdicts {
            verdict: Vec::with_capacity(n),
            msg_type: Vec::with_capacity(n),
            reason: Vec::with_capacity(n),
            symbol: Vec::with_capacity(n),
            seq_num: Vec::with_capacity(n),
            entries: Vec::with_capacity(n),
            trades: Vec::with_capacity(n),
            expected: Vec::with_capacity(n),
            computed: Vec::with_capacity(n),
            details: Vec::new(),
        }
    }

    fn push(&mut self, index: usize, v: Verdict) {
        self.verdict.push(v.verdict);
        self.msg_type.push(v.msg_type);
        self.reason.push(v.reason);
        self.symbol.push(v.symbol);
        self.seq_num.push(v.seq_num);
        self.entries.push(v.entries);
        self.trades.push(v.trades);
        self.expected.push(v.expected);
        self.computed.push(v.computed);
        if let Some(detail) = v.detail {
            self.details
                .push((u32::try_from(index).unwrap_or(u32::MAX), detail));
        }
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.verdict.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.verdict.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Verdict {
    verdict: u8,
    msg_type: u8,
    reason: u8,
    symbol: u32,
    seq_num: u64,
    entries: u32,
    trades: u32,
    expected: u32,
    computed: u32,
    detail: Option<String>,
}

impl Verdict {
    fn new(verdict: u8) -> Self {
        Verdict {
            verdict,
            msg_type: 0,
            reason: 0,
            symbol: NO_SYMBOL,
            seq_num: NO_SEQ,
            entries: 0,
            trades: 0,
            expected: 0,
            computed: 0,
            detail: None,
        }
    }

    fn reject(reason: u8, detail: String) -> Self {
        Verdict {
            reason,
            detail: Some(detail),
            ..Verdict::new(REJECT)
        }
    }
}

/// Why a market-data message was not applied: a reason code and a detail.
type Refusal = (u8, String);

/// Order ids of one level3 book: id -> handle, recycled once the order is gone.
#[derive(Debug, Default)]
struct OrderIds {
    handles: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    free: Vec<u32>,
}

impl OrderIds {
    fn get(&self, id: &str) -> Option<u32> {
        self.handles.get(id).copied()
    }

    fn intern(&mut self, id: &str) -> Result<u32, Refusal> {
        if let Some(h) = self.get(id) {
            return Ok(h);
        }
        let handle = match self.free.pop() {
            Some(h) => {
                if let Some(name) = self.names.get_mut(h as usize) {
                    *name = id.into();
                }
                h
            }
            None => {
                let h = u32::try_from(self.names.len())
                    .ok()
                    .filter(|&h| h < u32::MAX - 1)
                    .ok_or_else(|| (R_APPLY_ERROR, "too many level3 order ids".to_owned()))?;
                self.names.push(id.into());
                h
            }
        };
        self.handles.insert(id.into(), handle);
        Ok(handle)
    }

    fn release(&mut self, id: &str) {
        if let Some(h) = self.handles.remove(id) {
            self.free.push(h);
        }
    }

    /// Forget ids whose orders left the book without a delete (depth truncation).
    fn sweep(&mut self, book: &L3Book) {
        if self.handles.len() <= 2 * book.len() + 4096 {
            return;
        }
        let free = &mut self.free;
        self.handles.retain(|_, &mut h| {
            let live = book.order(h).is_some();
            if !live {
                free.push(h);
            }
            live
        });
    }

    fn name(&self, handle: u32) -> &str {
        self.names.get(handle as usize).map_or("", |n| n.as_ref())
    }
}

#[derive(Debug)]
enum Book {
    L2(Box<L2Book>),
    L3(Box<(L3Book, OrderIds)>),
}

#[derive(Debug)]
struct BookState {
    book: Book,
    pp: u8,
    qp: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Subscribed {
    depth: Option<usize>,
    precision: Option<(u8, u8)>,
}

/// What a [`FixBooks`] reports of one side's level: price, total quantity (units).
pub type LevelUnits = (i64, i128);

/// Books of one FIX market-data session (L2 or L3), fed in batches of whole messages.
#[derive(Debug)]
pub struct FixBooks {
    level3: bool,
    symbols: Vec<Box<str>>,
    symbol_ids: HashMap<Box<str>, u32>,
    subscribed: HashMap<Box<str>, Subscribed>,
    books: Vec<Option<BookState>>,
    trades: Vec<u64>,
    bids: Vec<L3Entry>,
    asks: Vec<L3Entry>,
    levels: [Vec<(i64, i64)>; 2],
    /// Scratch: what this message's earlier entries did (L2: side, price, present).
    seen_levels: Vec<(bool, i64, bool)>,
    /// Scratch: what this message's earlier entries did (L3: handle, present).
    seen_orders: Vec<(u32, bool)>,
    /// Scratch: entries (by index) that removed an order, for their ids to be released.
    released: Vec<usize>,
}

fn number_detail(tag: u32, d: Decimal, err: &NumberError) -> String {
    format!(
        "tag {tag}: {} (mantissa {}, scale {})",
        err, d.mantissa, d.scale
    )
}

fn units(tag: u32, d: Option<Decimal>, precision: u8) -> Result<i64, Refusal> {
    let d = d.ok_or_else(|| (R_BAD_ENTRY, format!("tag {tag} missing")))?;
    d.to_units(precision)
        .map_err(|e| (R_PRECISION, number_detail(tag, d, &e)))
}

fn is_ask(e: &MdEntry) -> bool {
    e.entry_type == b'1'
}

/// Kraken's L2 MDEntryID is `O` + the price: when it has that form it must name `price`.
fn check_l2_id(e: &MdEntry, price: i64, pp: u8) -> Result<(), Refusal> {
    let Some(id) = e.entry_id.as_deref() else {
        return Ok(());
    };
    let Some(named) = id
        .strip_prefix('O')
        .and_then(|rest| parse_decimal(rest.as_bytes()).ok())
    else {
        return Ok(());
    };
    match named.to_units(pp) {
        Ok(p) if p == price => Ok(()),
        _ => Err((
            R_ID_MISMATCH,
            format!("MDEntryID {id:?} names another price than 270"),
        )),
    }
}

fn side_name(ask: bool) -> &'static str {
    if ask { "offer" } else { "bid" }
}

fn action_name(action: u8) -> &'static str {
    match action {
        0 => "new",
        1 => "change",
        _ => "delete",
    }
}

/// Decimal text of `units` at `precision` decimals (`12345`, 2 -> `123.45`).
pub fn units_text(units: i128, precision: u8) -> String {
    let digits = units.unsigned_abs().to_string();
    let sign = if units < 0 { "-" } else { "" };
    let p = usize::from(precision);
    if p == 0 {
        return format!("{sign}{digits}");
    }
    let padded = if digits.len() <= p {
        format!("{}{digits}", "0".repeat(p + 1 - digits.len()))
    } else {
        digits
    };
    let (whole, frac) = padded.split_at(padded.len() - p);
    format!("{sign}{whole}.{frac}")
}

impl FixBooks {
    /// Books of an L2 (`level3` false) or L3 session.
    pub fn new(level3: bool) -> Self {
        FixBooks {
            level3,
            symbols: Vec::new(),
            symbol_ids: HashMap::new(),
            subscribed: HashMap::new(),
            books: Vec::new(),
            trades: Vec::new(),
            bids: Vec::new(),
            asks: Vec::new(),
            levels: [Vec::new(), Vec::new()],
            seen_levels: Vec::new(),
            seen_orders: Vec::new(),
            released: Vec::new(),
        }
    }

    /// Whether this serves an L3 session.
    pub fn level3(&self) -> bool {
        self.level3
    }

    /// Depth (price levels per side, at least 1) and precisions (decimals of price and size,
    /// at most 18) of `symbol`'s next snapshots; `None` keeps the defaults (see the module).
    pub fn subscribe(
        &mut self,
        symbol: &str,
        depth: Option<usize>,
        precision: Option<(u8, u8)>,
    ) -> Result<(), String> {
        if depth == Some(0) {
            return Err("depth must be at least 1".to_owned());
        }
        if let Some((pp, qp)) = precision {
            if pp > MAX_SCALE || qp > MAX_SCALE {
                return Err(format!("precisions must be in 0..={MAX_SCALE}"));
            }
        }
        self.subscribed
            .insert(symbol.into(), Subscribed { depth, precision });
        Ok(())
    }

    /// Symbols by id (what the `symbol` column indexes).
    pub fn symbols(&self) -> &[Box<str>] {
        &self.symbols
    }

    fn state(&self, symbol: &str) -> Option<&BookState> {
        let &id = self.symbol_ids.get(symbol)?;
        self.books.get(id as usize)?.as_ref()
    }

    /// Whether `symbol` has a valid book.
    pub fn has_book(&self, symbol: &str) -> bool {
        self.state(symbol).is_some()
    }

    /// Price and size precisions of `symbol`'s valid book.
    pub fn precision(&self, symbol: &str) -> Option<(u8, u8)> {
        self.state(symbol).map(|s| (s.pp, s.qp))
    }

    /// Trade entries (269=2) counted for `symbol` in applied messages.
    pub fn trade_count(&self, symbol: &str) -> u64 {
        self.symbol_ids
            .get(symbol)
            .and_then(|&id| self.trades.get(id as usize))
            .copied()
            .unwrap_or(0)
    }

    /// The `n` best price levels per side of `symbol`'s valid book, as (price, total size)
    /// units: `(bids, asks)`, best first.
    pub fn top(&self, symbol: &str, n: usize) -> Option<(Vec<LevelUnits>, Vec<LevelUnits>)> {
        let state = self.state(symbol)?;
        let side = |ask: bool| -> Vec<LevelUnits> {
            match &state.book {
                Book::L2(book) => book
                    .levels(ask)
                    .take(n)
                    .map(|(p, q)| (p, i128::from(q)))
                    .collect(),
                Book::L3(l3) => {
                    let mut out: Vec<LevelUnits> = Vec::new();
                    for o in l3.0.orders(ask) {
                        let len = out.len();
                        match out.last_mut() {
                            Some(last) if last.0 == o.price => last.1 += i128::from(o.qty),
                            _ if len == n => break,
                            _ => out.push((o.price, i128::from(o.qty))),
                        }
                    }
                    out
                }
            }
        };
        Some((side(false), side(true)))
    }

    /// The orders of the `n` best levels per side of `symbol`'s valid L3 book, as
    /// `(MDEntryID, price units, size units)` in queue order: `(bids, asks)`.
    #[allow(clippy::type_complexity)]
    pub fn orders(
        &self,
        symbol: &str,
        n: usize,
    ) -> Option<(Vec<(String, i64, i64)>, Vec<(String, i64, i64)>)> {
        let Book::L3(l3) = &self.state(symbol)?.book else {
            return None;
        };
        let (book, ids) = (&l3.0, &l3.1);
        let side = |ask: bool| {
            let mut out = Vec::new();
            let mut levels = 0usize;
            let mut last = None;
            for o in book.orders(ask) {
                if last != Some(o.price) {
                    if levels == n {
                        break;
                    }
                    levels += 1;
                    last = Some(o.price);
                }
                out.push((ids.name(o.order).to_owned(), o.price, o.qty));
            }
            out
        };
        Some((side(false), side(true)))
    }

    fn intern(&mut self, symbol: &str) -> u32 {
        if let Some(&id) = self.symbol_ids.get(symbol) {
            return id;
        }
        let id = u32::try_from(self.symbols.len()).unwrap_or(NO_SYMBOL - 1);
        self.symbols.push(symbol.into());
        self.symbol_ids.insert(symbol.into(), id);
        self.books.push(None);
        self.trades.push(0);
        id
    }

    /// Decode and apply a batch of messages (each item one whole message); one verdict per
    /// message, in order.
    pub fn feed<'m, I>(&mut self, messages: I) -> FixVerdicts
    where
        I: IntoIterator<Item = &'m [u8]>,
        I::IntoIter: ExactSizeIterator,
    {
        let messages = messages.into_iter();
        let mut out = FixVerdicts::with_capacity(messages.len());
        for (index, raw) in messages.enumerate() {
            let v = self.one(raw);
            out.push(index, v);
        }
        out
    }

    fn one(&mut self, raw: &[u8]) -> Verdict {
        let (consumed, result) = match fix::decode_one(raw) {
            None => {
                return Verdict::reject(
                    R_INCOMPLETE,
                    format!("{} bytes: not a whole FIX message", raw.len()),
                );
            }
            Some(decoded) => decoded,
        };
        let message = match result {
            Err(r) => {
                let mut v = Verdict::reject(codec_reason(r.reason.code()), r.reason.to_string());
                v.msg_type = r.msg_type.as_deref().map_or(0, type_byte);
                v.seq_num = r.seq_num.unwrap_or(NO_SEQ);
                return v;
            }
            Ok(m) => m,
        };
        let mut v = if consumed != raw.len() {
            Verdict::reject(
                R_TRAILING,
                format!("{} bytes after the message", raw.len() - consumed),
            )
        } else {
            match message.msg_type.as_str() {
                "W" | "X" => self.market_data(&message),
                _ => Verdict::new(SKIPPED),
            }
        };
        v.msg_type = type_byte(&message.msg_type);
        v.seq_num = message.seq_num;
        v
    }

    fn market_data(&mut self, m: &Message) -> Verdict {
        let snapshot = m.msg_type == "W";
        let Some(symbol) = m.field(55) else {
            return Verdict::reject(
                codec_reason("missing_field"),
                "Symbol (55) missing".to_owned(),
            );
        };
        let id = self.intern(symbol);
        let slot = id as usize;
        let trades = m.entries.iter().filter(|e| e.entry_type == b'2').count();
        let book_entries = m.entries.len() - trades;
        let previous = self.books.get_mut(slot).and_then(Option::take);
        let result = if snapshot {
            self.snapshot_state(symbol, m)
                .and_then(|state| self.apply(state, true, m))
        } else {
            match previous {
                Some(state) => self.apply(state, false, m),
                None if book_entries == 0 => Ok((None, 0, None)),
                None => Err((
                    R_NO_SNAPSHOT,
                    "incremental refresh without a valid snapshot".to_owned(),
                )),
            }
        };
        let mut v = match result {
            Err((reason, detail)) => Verdict::reject(reason, detail),
            Ok((state, computed, mismatch)) => {
                let verdict = match (m.book_checksum, mismatch) {
                    (_, Some(_)) => MISMATCH,
                    (Some(_), None) if state.is_some() => OK,
                    _ => UNCHECKED,
                };
                if verdict != MISMATCH {
                    if let Some(s) = self.books.get_mut(slot) {
                        *s = state;
                    }
                    if let Some(t) = self.trades.get_mut(slot) {
                        *t += trades as u64;
                    }
                }
                let mut v = Verdict::new(verdict);
                v.entries = u32::try_from(book_entries).unwrap_or(u32::MAX);
                v.trades = u32::try_from(trades).unwrap_or(u32::MAX);
                v.computed = computed;
                v
            }
        };
        v.symbol = id;
        v.expected = m.book_checksum.unwrap_or(0);
        v
    }

    fn snapshot_state(&self, symbol: &str, m: &Message) -> Result<BookState, Refusal> {
        let sub = self.subscribed.get(symbol).copied().unwrap_or_default();
        let (pp, qp) = match sub.precision {
            Some(p) => p,
            None => m.entries.iter().fold((0, 0), |(pp, qp), e| {
                (
                    e.price.map_or(pp, |d| pp.max(d.scale)),
                    e.size.map_or(qp, |d| qp.max(d.scale)),
                )
            }),
        };
        let book = if self.level3 {
            let depth = sub.depth.unwrap_or(usize::MAX);
            Book::L3(Box::new((
                L3Book::new(depth, u32::MAX - 1),
                OrderIds::default(),
            )))
        } else {
            Book::L2(Box::new(L2Book::new(sub.depth.unwrap_or(DEFAULT_L2_DEPTH))))
        };
        Ok(BookState { book, pp, qp })
    }

    /// Check and apply the book entries of `m`: the new state, the book's CRC32, and
    /// `Some(expected)` when 5041 disagrees with it.
    fn apply(
        &mut self,
        mut state: BookState,
        snapshot: bool,
        m: &Message,
    ) -> Result<(Option<BookState>, u32, Option<u32>), Refusal> {
        let (pp, qp) = (state.pp, state.qp);
        let (computed, crossed) = match &mut state.book {
            Book::L2(book) => {
                l2_entries(
                    book,
                    snapshot,
                    m,
                    (pp, qp),
                    &mut self.levels,
                    &mut self.seen_levels,
                )?;
                let [bids, asks] = &mut self.levels;
                let (nb, na) = (bids.len(), asks.len());
                let outcome = book
                    .apply(snapshot, bids.drain(..), asks.drain(..))
                    .map_err(apply_error)?;
                if snapshot {
                    let held = book.levels(false).count() + book.levels(true).count();
                    if held + outcome.truncated as usize != nb + na {
                        return Err((
                            R_DUPLICATE_ENTRY,
                            "snapshot names a price twice on one side".to_owned(),
                        ));
                    }
                }
                (outcome.computed, outcome.crossed)
            }
            Book::L3(l3) => {
                let (book, ids) = (&mut l3.0, &mut l3.1);
                self.bids.clear();
                self.asks.clear();
                l3_entries(
                    (book, ids),
                    snapshot,
                    m,
                    (pp, qp),
                    (&mut self.bids, &mut self.asks),
                    (&mut self.seen_orders, &mut self.released),
                )?;
                let outcome = book
                    .apply(snapshot, self.bids.drain(..), self.asks.drain(..))
                    .map_err(apply_error)?;
                if outcome.duplicate_adds > 0 {
                    return Err((
                        R_DUPLICATE_ENTRY,
                        format!("{} orders added twice", outcome.duplicate_adds),
                    ));
                }
                let unknown = outcome.unknown_deletes + outcome.unknown_modifies;
                if unknown > 0 {
                    return Err((
                        R_UNKNOWN_ENTRY,
                        format!("{unknown} entries for orders not in the book"),
                    ));
                }
                for &i in &self.released {
                    // deleted (an id deleted then added again in one message stays)
                    if let Some(id) = m.entries.get(i).and_then(|e| e.entry_id.as_deref()) {
                        if ids.get(id).is_some_and(|h| book.order(h).is_none()) {
                            ids.release(id);
                        }
                    }
                }
                ids.sweep(book);
                (outcome.computed, outcome.crossed)
            }
        };
        if crossed {
            return Err((R_CROSSED, "best bid >= best offer".to_owned()));
        }
        let mismatch = m.book_checksum.filter(|&c| c != computed);
        Ok((Some(state), computed, mismatch))
    }
}

fn type_byte(msg_type: &str) -> u8 {
    match msg_type.as_bytes() {
        [c] => *c,
        _ => 0,
    }
}

fn apply_error(e: BookError) -> Refusal {
    let reason = match e {
        BookError::InvalidLevel { .. } | BookError::InvalidOrder { .. } => R_BAD_ENTRY,
        _ => R_APPLY_ERROR,
    };
    (reason, format!("BookError: {e}"))
}

/// The L2 `(price, size)` units of `m`'s book entries by side, checked against `book` (and
/// the message's earlier entries) before anything is applied.
fn l2_entries(
    book: &L2Book,
    snapshot: bool,
    m: &Message,
    (pp, qp): (u8, u8),
    [bids, asks]: &mut [Vec<(i64, i64)>; 2],
    seen: &mut Vec<(bool, i64, bool)>,
) -> Result<(), Refusal> {
    bids.clear();
    asks.clear();
    // (ask, price, present after the entry) of this message's earlier entries
    seen.clear();
    for (i, e) in m.entries.iter().enumerate() {
        if e.entry_type == b'2' {
            continue;
        }
        let ask = is_ask(e);
        let price = units(270, e.price, pp)?;
        let size = units(271, e.size, qp)?;
        if price <= 0 {
            return Err((R_BAD_ENTRY, format!("entry {}: price must be > 0", i + 1)));
        }
        check_l2_id(e, price, pp)?;
        let action = if snapshot { 0 } else { e.action.unwrap_or(0) };
        let qty = if action == 2 { 0 } else { size };
        if action == 0 && size == 0 {
            return Err((R_BAD_ENTRY, format!("entry {}: new level of size 0", i + 1)));
        }
        if !snapshot {
            let present = seen
                .iter()
                .rev()
                .find(|&&(a, p, _)| a == ask && p == price)
                .map(|&(_, _, present)| present)
                .unwrap_or_else(|| book.level_qty(ask, price).is_some());
            let refusal = match (action, present) {
                (0, true) => Some(R_DUPLICATE_ENTRY),
                (1 | 2, false) => Some(R_UNKNOWN_ENTRY),
                _ => None,
            };
            if let Some(reason) = refusal {
                return Err((
                    reason,
                    format!(
                        "entry {}: {} of {} level {}",
                        i + 1,
                        action_name(action),
                        side_name(ask),
                        if present {
                            "already in the book"
                        } else {
                            "not in the book"
                        },
                    ),
                ));
            }
            seen.push((ask, price, qty > 0));
        }
        if ask {
            asks.push((price, qty));
        } else {
            bids.push((price, qty));
        }
    }
    Ok(())
}

/// The level3 entries of `m` by side, checked against `book` (and the message's earlier
/// entries) before anything is applied; `released` gets the entries that remove an order
/// (their ids are released once applied).
fn l3_entries(
    (book, ids): (&L3Book, &mut OrderIds),
    snapshot: bool,
    m: &Message,
    (pp, qp): (u8, u8),
    (bids, asks): (&mut Vec<L3Entry>, &mut Vec<L3Entry>),
    (seen, released): (&mut Vec<(u32, bool)>, &mut Vec<usize>),
) -> Result<(), Refusal> {
    seen.clear();
    released.clear();
    for (i, e) in m.entries.iter().enumerate() {
        if e.entry_type == b'2' {
            continue;
        }
        let ask = is_ask(e);
        let Some(id) = e.entry_id.as_deref() else {
            return Err((
                R_BAD_ENTRY,
                format!(
                    "entry {}: MDEntryID (278) missing: it is the order id in L3",
                    i + 1
                ),
            ));
        };
        let price = units(270, e.price, pp)?;
        let size = units(271, e.size, qp)?;
        if price <= 0 {
            return Err((R_BAD_ENTRY, format!("entry {}: price must be > 0", i + 1)));
        }
        let action = if snapshot { 0 } else { e.action.unwrap_or(0) };
        if action == 0 && size == 0 {
            return Err((R_BAD_ENTRY, format!("entry {}: new order of size 0", i + 1)));
        }
        let known = ids.get(id);
        let present = match known {
            None => false,
            Some(h) => seen
                .iter()
                .rev()
                .find(|&&(s, _)| s == h)
                .map(|&(_, p)| p)
                .unwrap_or_else(|| !snapshot && book.order(h).is_some()),
        };
        let refusal = match (action, present) {
            (0, true) => Some(R_DUPLICATE_ENTRY),
            (1 | 2, false) => Some(R_UNKNOWN_ENTRY),
            _ => None,
        };
        if let Some(reason) = refusal {
            return Err((
                reason,
                format!(
                    "entry {}: {} of order {id:?} {}",
                    i + 1,
                    action_name(action),
                    if present {
                        "already in the book"
                    } else {
                        "not in the book"
                    },
                ),
            ));
        }
        let handle = match known {
            Some(h) => h,
            None => ids.intern(id)?,
        };
        let (event, qty) = match action {
            0 => (l3::ADD, size),
            1 => (l3::MODIFY, size),
            _ => (l3::DELETE, 0),
        };
        if event == l3::DELETE || qty == 0 {
            released.push(i);
        }
        seen.push((handle, qty > 0));
        let entry = L3Entry {
            event,
            order: handle,
            price,
            qty,
            ts: e.queue_time_ns.or(e.timestamp_ns),
        };
        if ask {
            asks.push(entry);
        } else {
            bids.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fix::{Header, encode};

    const T0: i64 = 1_688_737_347_230_000_000;

    /// `(action or None, type, id, price, size)` of one entry.
    type Entry<'a> = (Option<&'a str>, &'a str, &'a str, &'a str, &'a str);

    fn msg(msg_type: &str, seq: u64, body: &[(u32, &str)]) -> Vec<u8> {
        let header = Header {
            msg_type,
            seq_num: seq,
            sender: "KRAKEN-MD",
            target: "CLIENT",
            sending_time_ns: T0,
            poss_dup: false,
            orig_sending_time_ns: None,
        };
        let body: Vec<(u32, &[u8])> = body.iter().map(|(t, v)| (*t, v.as_bytes())).collect();
        encode(&header, &body).unwrap()
    }

    /// Entries into a W or X body.
    fn md(msg_type: &str, seq: u64, entries: &[Entry], checksum: Option<&str>) -> Vec<u8> {
        let n = entries.len().to_string();
        let mut body: Vec<(u32, &str)> = vec![(262, "1"), (55, "BTC/USD"), (268, &n)];
        for (action, kind, id, price, size) in entries {
            if let Some(a) = action {
                body.push((279, a));
            }
            body.extend([(269, *kind), (278, *id), (270, *price), (271, *size)]);
            body.push((273, "13:42:27.208"));
        }
        if let Some(c) = checksum {
            body.push((5041, c));
        }
        msg(msg_type, seq, &body)
    }

    fn l2_snapshot() -> Vec<u8> {
        md(
            "W",
            1,
            &[
                (None, "0", "O100.0", "100.0", "1.5"),
                (None, "0", "O99.5", "99.5", "2"),
                (None, "1", "O101.0", "101.0", "0.25"),
                (None, "1", "O102.0", "102.0", "3"),
            ],
            None,
        )
    }

    fn feed(books: &mut FixBooks, messages: &[Vec<u8>]) -> FixVerdicts {
        books.feed(messages.iter().map(Vec::as_slice))
    }

    fn reason(v: &FixVerdicts, i: usize) -> &'static str {
        REASONS[v.reason[i] as usize]
    }

    fn texts(levels: &[LevelUnits], pp: u8, qp: u8) -> Vec<(String, String)> {
        levels
            .iter()
            .map(|&(p, q)| (units_text(i128::from(p), pp), units_text(q, qp)))
            .collect()
    }

    #[test]
    fn l2_snapshot_then_new_change_delete() {
        let mut books = FixBooks::new(false);
        books.subscribe("BTC/USD", Some(10), Some((1, 2))).unwrap();
        let x = md(
            "X",
            2,
            &[
                (Some("2"), "0", "O99.5", "99.5", "0"),
                (Some("1"), "1", "O101.0", "101.0", "0.5"),
                (Some("0"), "0", "O100.5", "100.5", "4"),
                (Some("0"), "2", "T1", "101.0", "0.1"),
            ],
            None,
        );
        let v = feed(&mut books, &[l2_snapshot(), x]);
        assert_eq!(v.verdict, vec![UNCHECKED, UNCHECKED], "{:?}", v.details);
        assert_eq!(v.msg_type, vec![b'W', b'X']);
        assert_eq!(v.entries, vec![4, 3]);
        assert_eq!(v.trades, vec![0, 1]);
        assert_eq!(v.seq_num, vec![1, 2]);
        assert_eq!(books.trade_count("BTC/USD"), 1);
        let (bids, asks) = books.top("BTC/USD", 5).unwrap();
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            texts(&bids, 1, 2),
            vec![s("100.5", "4.00"), s("100.0", "1.50")]
        );
        assert_eq!(
            texts(&asks, 1, 2),
            vec![s("101.0", "0.50"), s("102.0", "3.00")]
        );
        assert_eq!(books.top("BTC/USD", 1).unwrap().0.len(), 1);
    }

    #[test]
    fn checksum_5041_is_checked_against_the_book_crc() {
        let mut books = FixBooks::new(false);
        let v = feed(&mut books, &[l2_snapshot()]);
        let crc = v.computed[0].to_string();
        let mut books = FixBooks::new(false);
        let good = md(
            "W",
            1,
            &[
                (None, "0", "O100.0", "100.0", "1.5"),
                (None, "0", "O99.5", "99.5", "2"),
                (None, "1", "O101.0", "101.0", "0.25"),
                (None, "1", "O102.0", "102.0", "3"),
            ],
            Some(&crc),
        );
        let v = feed(&mut books, std::slice::from_ref(&good));
        assert_eq!(v.verdict, vec![OK]);
        assert_eq!(v.expected[0], v.computed[0]);
        let bad = String::from_utf8(good)
            .unwrap()
            .replace(&format!("5041={crc}"), "5041=7");
        // re-frame the altered body
        let body = &bad[bad.find("35=").unwrap()..bad.find("\x0110=").unwrap() + 1];
        let mut raw = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
        let sum = fix::checksum(&raw);
        raw.extend(format!("10={sum:03}\x01").as_bytes());
        let v = feed(&mut books, &[raw]);
        assert_eq!(v.verdict, vec![MISMATCH]);
        assert_eq!(v.expected, vec![7]);
        assert!(!books.has_book("BTC/USD"));
    }

    #[test]
    fn inconsistent_l2_updates_are_rejected_and_end_the_book() {
        let cases: Vec<(Vec<Entry>, &str)> = vec![
            (
                vec![(Some("2"), "0", "O98.0", "98.0", "0")],
                "unknown_entry",
            ),
            (
                vec![(Some("1"), "1", "O103.0", "103.0", "1")],
                "unknown_entry",
            ),
            (
                vec![(Some("0"), "0", "O100.0", "100.0", "1")],
                "duplicate_entry",
            ),
            (
                vec![
                    (Some("2"), "0", "O99.5", "99.5", "0"),
                    (Some("2"), "0", "O99.5", "99.5", "0"),
                ],
                "unknown_entry",
            ),
            (vec![(Some("0"), "0", "O101.5", "101.5", "1")], "crossed"),
            (vec![(Some("0"), "0", "O98.0", "98.05", "1")], "precision"),
            (
                vec![(Some("0"), "0", "O97.0", "98.0", "1")],
                "entry_id_mismatch",
            ),
            (vec![(Some("0"), "0", "O98.0", "98.0", "0")], "bad_entry"),
            (vec![(Some("0"), "0", "O0", "0", "1")], "bad_entry"),
        ];
        for (entries, want) in cases {
            let mut books = FixBooks::new(false);
            books.subscribe("BTC/USD", None, Some((1, 2))).unwrap();
            let x = md("X", 2, &entries, None);
            let after = md("X", 3, &[(Some("1"), "0", "O100.0", "100.0", "1")], None);
            let v = feed(&mut books, &[l2_snapshot(), x, after]);
            assert_eq!(v.verdict, vec![UNCHECKED, REJECT, REJECT], "{want}");
            assert_eq!(reason(&v, 1), want, "{:?}", v.details);
            assert_eq!(reason(&v, 2), "update_before_snapshot");
            assert_eq!(v.details.len(), 2);
            assert!(!books.has_book("BTC/USD"));
            // a new snapshot starts over
            let v = feed(&mut books, &[l2_snapshot()]);
            assert_eq!(v.verdict, vec![UNCHECKED]);
        }
    }

    #[test]
    fn snapshot_with_a_price_twice_is_rejected() {
        let w = md(
            "W",
            1,
            &[
                (None, "0", "O100.0", "100.0", "1.5"),
                (None, "0", "O100.0", "100.0", "2"),
            ],
            None,
        );
        let v = feed(&mut FixBooks::new(false), &[w]);
        assert_eq!(reason(&v, 0), "duplicate_entry");
    }

    #[test]
    fn inferred_precision_and_depth_truncation() {
        let mut books = FixBooks::new(false);
        books.subscribe("BTC/USD", Some(1), None).unwrap();
        let v = feed(&mut books, &[l2_snapshot()]);
        assert_eq!(v.verdict, vec![UNCHECKED]);
        assert_eq!(books.precision("BTC/USD"), Some((1, 2)));
        let (bids, asks) = books.top("BTC/USD", 10).unwrap();
        assert_eq!((bids.len(), asks.len()), (1, 1));
        // a finer price than the snapshot showed is not exact at its precision
        let x = md("X", 2, &[(Some("0"), "0", "O99.25", "99.25", "1")], None);
        let v = feed(&mut books, &[x]);
        assert_eq!(reason(&v, 0), "precision");
    }

    #[test]
    fn codec_rejects_and_framing_are_reasons() {
        let mut books = FixBooks::new(false);
        let good = l2_snapshot();
        let mut trailing = good.clone();
        trailing.extend(b"xx");
        let mut bad_sum = good.clone();
        let n = bad_sum.len();
        bad_sum[n - 2] = if bad_sum[n - 2] == b'0' { b'1' } else { b'0' };
        let unknown = msg("ZZ", 5, &[(58, "x")]);
        let heartbeat = msg("0", 6, &[]);
        let y = msg("Y", 7, &[(262, "1"), (281, "0"), (58, "Unknown symbol")]);
        let v = feed(
            &mut books,
            &[
                b"garbage".to_vec(),
                good[..20].to_vec(),
                trailing,
                bad_sum,
                unknown,
                heartbeat,
                y,
                Vec::new(),
            ],
        );
        let reasons: Vec<&str> = (0..v.len()).map(|i| reason(&v, i)).collect();
        assert_eq!(
            reasons,
            vec![
                "garbage",
                "incomplete",
                "trailing_bytes",
                "checksum",
                "unknown_msg_type",
                "",
                "",
                "incomplete"
            ]
        );
        assert_eq!(v.verdict[5], SKIPPED);
        assert_eq!(v.verdict[6], SKIPPED);
        assert_eq!(v.msg_type[4], 0);
        assert_eq!(v.seq_num[4], 5);
        assert_eq!(v.msg_type[6], b'Y');
        assert_eq!(v.details.len(), 6);
    }

    #[test]
    fn trades_without_a_book_are_counted_but_book_entries_need_one() {
        let mut books = FixBooks::new(false);
        let trade = md("X", 1, &[(Some("0"), "2", "T1", "100.0", "0.5")], None);
        let update = md("X", 2, &[(Some("1"), "0", "O100.0", "100.0", "1")], None);
        let v = feed(&mut books, &[trade, update]);
        assert_eq!(v.verdict, vec![UNCHECKED, REJECT]);
        assert_eq!(reason(&v, 1), "update_before_snapshot");
        assert_eq!(books.trade_count("BTC/USD"), 1);
        assert!(books.top("BTC/USD", 10).is_none());
    }

    fn l3_snapshot() -> Vec<u8> {
        md(
            "W",
            1,
            &[
                (None, "0", "A", "100.0", "1"),
                (None, "0", "B", "100.0", "2"),
                (None, "0", "C", "99.0", "1"),
                (None, "1", "D", "101.0", "1"),
            ],
            None,
        )
    }

    #[test]
    fn l3_orders_keep_queue_order() {
        let mut books = FixBooks::new(true);
        books.subscribe("BTC/USD", Some(10), Some((1, 0))).unwrap();
        let x = md(
            "X",
            2,
            &[
                (Some("1"), "0", "A", "100.0", "0.5"), // size change: keeps its place
                (Some("0"), "0", "E", "100.0", "3"),
                (Some("2"), "0", "B", "100.0", "2"),
                (Some("1"), "0", "C", "100.0", "1"), // price change: to the back
                (Some("0"), "1", "F", "101.0", "2"),
            ],
            None,
        );
        let v = feed(&mut books, &[l3_snapshot(), x]);
        assert_eq!(v.verdict, vec![UNCHECKED, REJECT], "{:?}", v.details);
        // "0.5" is finer than precision 0
        assert_eq!(reason(&v, 1), "precision");
        let mut books = FixBooks::new(true);
        books.subscribe("BTC/USD", Some(10), Some((1, 1))).unwrap();
        let x = String::from_utf8(md(
            "X",
            2,
            &[
                (Some("1"), "0", "A", "100.0", "0.5"),
                (Some("0"), "0", "E", "100.0", "3"),
                (Some("2"), "0", "B", "100.0", "2"),
                (Some("1"), "0", "C", "100.0", "1"),
                (Some("0"), "1", "F", "101.0", "2"),
            ],
            None,
        ))
        .unwrap();
        let v = feed(&mut books, &[l3_snapshot(), x.into_bytes()]);
        assert_eq!(v.verdict, vec![UNCHECKED, UNCHECKED], "{:?}", v.details);
        let (bids, asks) = books.orders("BTC/USD", 10).unwrap();
        let ids: Vec<&str> = bids.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(ids, vec!["A", "E", "C"]);
        assert_eq!(bids[0].2, 5);
        let ids: Vec<&str> = asks.iter().map(|o| o.0.as_str()).collect();
        assert_eq!(ids, vec!["D", "F"]);
        let (top_bids, _) = books.top("BTC/USD", 10).unwrap();
        assert_eq!(top_bids, vec![(1000, 5 + 30 + 10)]);
        // a deleted id can come back as a new order (its handle is recycled)
        let again = md("X", 3, &[(Some("0"), "1", "B", "102.0", "1")], None);
        let v = feed(&mut books, &[again]);
        assert_eq!(v.verdict, vec![UNCHECKED], "{:?}", v.details);
        assert_eq!(books.orders("BTC/USD", 10).unwrap().1[2].0, "B");
    }

    #[test]
    fn inconsistent_l3_updates_are_rejected() {
        let cases: Vec<(Vec<Entry>, &str)> = vec![
            (vec![(Some("2"), "0", "Z", "100.0", "1")], "unknown_entry"),
            (vec![(Some("1"), "0", "Z", "100.0", "1")], "unknown_entry"),
            (vec![(Some("0"), "0", "A", "100.0", "1")], "duplicate_entry"),
            (
                vec![
                    (Some("2"), "0", "A", "100.0", "1"),
                    (Some("1"), "0", "A", "100.0", "1"),
                ],
                "unknown_entry",
            ),
            (vec![(Some("0"), "0", "Z", "101.0", "1")], "crossed"),
        ];
        for (entries, want) in cases {
            let mut books = FixBooks::new(true);
            let v = feed(&mut books, &[l3_snapshot(), md("X", 2, &entries, None)]);
            assert_eq!(v.verdict, vec![UNCHECKED, REJECT], "{want}");
            assert_eq!(reason(&v, 1), want, "{:?}", v.details);
            assert!(!books.has_book("BTC/USD"));
        }
        let dup = md(
            "W",
            1,
            &[
                (None, "0", "A", "100.0", "1"),
                (None, "0", "A", "99.0", "1"),
            ],
            None,
        );
        let v = feed(&mut FixBooks::new(true), &[dup]);
        assert_eq!(reason(&v, 0), "duplicate_entry");
    }

    #[test]
    fn l3_ids_of_truncated_orders_are_swept() {
        let mut books = FixBooks::new(true);
        books.subscribe("BTC/USD", Some(1), Some((0, 0))).unwrap();
        let w = md("W", 1, &[(None, "1", "S", "1000000", "1")], None);
        let mut messages = vec![w];
        // each new best bid pushes the previous one out of the 1-level window
        for i in 0..10_000u32 {
            let id = format!("B{i}");
            let price = (i + 1).to_string();
            messages.push(md("X", 2, &[(Some("0"), "0", &id, &price, "1")], None));
        }
        let v = feed(&mut books, &messages);
        assert!(v.verdict.iter().all(|&x| x == UNCHECKED), "{:?}", v.details);
        let Book::L3(l3) = &books.state("BTC/USD").unwrap().book else {
            panic!("not L3");
        };
        assert!(l3.1.handles.len() <= 2 * l3.0.len() + 4096 + 1);
        assert!(l3.1.names.len() < 6000);
    }

    #[test]
    fn hostile_group_and_numbers() {
        let mut books = FixBooks::new(false);
        let huge = msg("X", 1, &[(55, "BTC/USD"), (262, "1"), (268, "999999")]);
        let absurd = md(
            "W",
            2,
            &[(None, "0", "O1", "99999999999999999999999", "1")],
            None,
        );
        let v = feed(&mut books, &[huge, absurd]);
        assert_eq!(reason(&v, 0), "group_too_large");
        assert_eq!(reason(&v, 1), "bad_number");
        // a value that parses but overflows the units at the book's precision
        books.subscribe("BTC/USD", None, Some((18, 18))).unwrap();
        let big = md("W", 3, &[(None, "0", "x", "123456789", "1")], None);
        let v = feed(&mut books, &[big]);
        assert_eq!(reason(&v, 0), "precision");
    }

    #[test]
    fn units_text_renders_exactly() {
        assert_eq!(units_text(12345, 2), "123.45");
        assert_eq!(units_text(5, 3), "0.005");
        assert_eq!(units_text(7, 0), "7");
        assert_eq!(units_text(-15, 1), "-1.5");
    }
}
