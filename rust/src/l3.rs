//! Spot level3 (order-by-order) book: exact state machine with Kraken's checksum.
//!
//! Same semantics as the Python reference model `recorder/book/l3.py` (`L3Book.apply_units`):
//!
//! * a snapshot replaces the book; each entry is added (its event is ignored);
//! * `add` appends the order at the back of its price level; an `add` of an id already in the
//!   book replaces the stale copy (counted as a duplicate add);
//! * `modify` at the same side and price changes the quantity in place (queue position kept,
//!   timestamp updated when given); to another price or side it is a delete + re-add at the
//!   back (counted as requeued, keeping the old timestamp when none is given); a `modify` of
//!   an unknown id is an `add` (counted); a `modify` to quantity 0 removes the order;
//! * `delete` removes by id (an unknown id is counted);
//! * entries are applied bids first then asks, each in array order; after the message each
//!   side is truncated to `depth` price levels, then the checksum is computed over every order
//!   of the 10 best levels per side (asks ascending then bids descending, queue order).
//!
//! Orders are identified by a dense `u32` handle (the caller interns Kraken's order ids, e.g.
//! as dictionary codes of the archive's `order_id` column); the book looks handles up in a
//! `Vec` and keeps orders and levels in slabs, each level's orders in a doubly linked FIFO.
//! Each order keeps its checksum piece; each level caches the join of its orders' pieces (an
//! `add` appends to it; a delete or modify marks it stale), each side caches the text of its 10 best levels, and the book caches the ask CRC
//! and the final CRC.

use std::collections::VecDeque;

use crate::checksum::{CHECKSUM_LEVELS, continue_crc32, crc32};
use crate::decimal::Piece;
use crate::error::BookError;

const NIL: u32 = u32::MAX;

/// Event codes of level3 update entries (the archive's `event` column).
pub const ADD: i64 = 1;
/// Modify event code.
pub const MODIFY: i64 = 2;
/// Delete event code.
pub const DELETE: i64 = 3;

/// One level3 entry: event code (ignored in snapshots), order handle, price and quantity
/// units, timestamp (ns) when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L3Entry {
    pub event: i64,
    pub order: u32,
    pub price: i64,
    pub qty: i64,
    pub ts: Option<i64>,
}

/// What applying one message did (anomaly counters are for this message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct L3Outcome {
    pub computed: u32,
    pub crossed: bool,
    pub requeued: u32,
    pub duplicate_adds: u32,
    pub unknown_modifies: u32,
    pub unknown_deletes: u32,
    pub truncated: u32,
}

/// A resting order as seen from outside: handle, price, quantity, timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderState {
    pub order: u32,
    pub price: i64,
    pub qty: i64,
    pub ts: Option<i64>,
}

#[derive(Debug, Clone)]
struct Order {
    id: u32,
    price: i64,
    qty: i64,
    ts: Option<i64>,
    ask: bool,
    level: u32,
    prev: u32,
    next: u32,
    /// Checksum text of the order (price then qty digits).
    piece: Piece,
}

#[derive(Debug, Clone)]
struct Level {
    key: i64,
    head: u32,
    tail: u32,
    count: u32,
    /// Checksum text of the level's orders in queue order; stale unless `text_ok`.
    text: Vec<u8>,
    text_ok: bool,
}

/// Orders, levels and the handle index, shared by both sides.
#[derive(Debug, Clone, Default)]
struct Store {
    orders: Vec<Order>,
    free_orders: Vec<u32>,
    levels: Vec<Level>,
    free_levels: Vec<u32>,
    /// order handle -> slot in `orders` (NIL when absent)
    index: Vec<u32>,
}

impl Store {
    fn slot_of(&self, id: u32) -> Option<u32> {
        match self.index.get(id as usize) {
            Some(&slot) if slot != NIL => Some(slot),
            _ => None,
        }
    }

    fn order(&self, slot: u32) -> Option<&Order> {
        self.orders.get(slot as usize)
    }

    fn new_order(&mut self, order: Order) -> u32 {
        let id = order.id as usize;
        let slot = match self.free_orders.pop() {
            Some(slot) => {
                if let Some(o) = self.orders.get_mut(slot as usize) {
                    *o = order;
                }
                slot
            }
            None => {
                self.orders.push(order);
                u32::try_from(self.orders.len() - 1).unwrap_or(NIL)
            }
        };
        if id >= self.index.len() {
            self.index.resize(id + 1, NIL);
        }
        if let Some(entry) = self.index.get_mut(id) {
            *entry = slot;
        }
        slot
    }

    fn new_level(&mut self, key: i64) -> u32 {
        match self.free_levels.pop() {
            Some(slot) => {
                if let Some(level) = self.levels.get_mut(slot as usize) {
                    level.key = key;
                    level.head = NIL;
                    level.tail = NIL;
                    level.count = 0;
                    level.text.clear();
                    level.text_ok = true;
                }
                slot
            }
            None => {
                self.levels.push(Level {
                    key,
                    head: NIL,
                    tail: NIL,
                    count: 0,
                    text: Vec::with_capacity(64),
                    text_ok: true,
                });
                u32::try_from(self.levels.len() - 1).unwrap_or(NIL)
            }
        }
    }

    /// Append order `slot` at the back of level `lv`.
    fn link_back(&mut self, lv: u32, slot: u32) {
        let Some(level) = self.levels.get_mut(lv as usize) else {
            return;
        };
        let tail = level.tail;
        level.tail = slot;
        if tail == NIL {
            level.head = slot;
        }
        level.count += 1;
        if let Some(order) = self.orders.get_mut(slot as usize) {
            order.level = lv;
            order.prev = tail;
            order.next = NIL;
            if level.text_ok {
                order.piece.push_to(&mut level.text);
            }
        }
        if let Some(prev) = self.orders.get_mut(tail as usize) {
            prev.next = slot;
        }
    }

    /// Unlink order `slot` from its level; returns the level and its remaining order count.
    fn unlink(&mut self, slot: u32) -> (u32, u32) {
        let Some(order) = self.orders.get(slot as usize) else {
            return (NIL, 0);
        };
        let (lv, prev, next) = (order.level, order.prev, order.next);
        if let Some(p) = self.orders.get_mut(prev as usize) {
            p.next = next;
        }
        if let Some(n) = self.orders.get_mut(next as usize) {
            n.prev = prev;
        }
        let Some(level) = self.levels.get_mut(lv as usize) else {
            return (NIL, 0);
        };
        if level.head == slot {
            level.head = next;
        }
        if level.tail == slot {
            level.tail = prev;
        }
        level.count = level.count.saturating_sub(1);
        level.text_ok = false;
        (lv, level.count)
    }

    /// Forget order `slot` (its handle no longer maps to it).
    fn free_order(&mut self, slot: u32) {
        if let Some(order) = self.orders.get(slot as usize) {
            if let Some(entry) = self.index.get_mut(order.id as usize) {
                *entry = NIL;
            }
            self.free_orders.push(slot);
        }
    }

    /// The level's checksum text, rebuilt from its orders when stale.
    fn level_text(&mut self, lv: u32) -> &[u8] {
        let Store { orders, levels, .. } = self;
        let Some(level) = levels.get_mut(lv as usize) else {
            return &[];
        };
        if !level.text_ok {
            level.text.clear();
            let mut slot = level.head;
            while let Some(order) = orders.get(slot as usize) {
                order.piece.push_to(&mut level.text);
                slot = order.next;
            }
            level.text_ok = true;
        }
        &level.text
    }

    fn level_orders(&self, lv: u32) -> LevelOrders<'_> {
        let head = self.levels.get(lv as usize).map_or(NIL, |l| l.head);
        LevelOrders {
            store: self,
            slot: head,
        }
    }
}

struct LevelOrders<'a> {
    store: &'a Store,
    slot: u32,
}

impl<'a> Iterator for LevelOrders<'a> {
    type Item = &'a Order;
    fn next(&mut self) -> Option<&'a Order> {
        let order = self.store.orders.get(self.slot as usize)?;
        self.slot = order.next;
        Some(order)
    }
}

#[derive(Debug, Clone)]
struct Side {
    /// +1 asks (key = price), -1 bids (key = -price): keys ascend best first.
    sign: i64,
    /// `(key, level slot)`, best first.
    keys: VecDeque<(i64, u32)>,
    text: Vec<u8>,
    dirty: bool,
}

impl Side {
    fn new(sign: i64) -> Self {
        Side {
            sign,
            keys: VecDeque::new(),
            text: Vec::with_capacity(2048),
            dirty: false,
        }
    }

    fn rank(&self, key: i64) -> Result<usize, usize> {
        self.keys.binary_search_by_key(&key, |&(k, _)| k)
    }
}

/// Kraken spot level3 book for one symbol at one subscribed depth (price levels per side).
#[derive(Debug, Clone)]
pub struct L3Book {
    depth: usize,
    max_orders: u32,
    bids: Side,
    asks: Side,
    store: Store,
    live: usize,
    ready: bool,
    ask_crc: u32,
    crc: Option<u32>,
    current: L3Outcome,
}

impl L3Book {
    /// An empty book. Order handles must be below `max_orders` (the size of the caller's id
    /// dictionary), which bounds the handle index.
    pub fn new(depth: usize, max_orders: u32) -> Self {
        L3Book {
            depth: depth.max(1),
            max_orders,
            bids: Side::new(-1),
            asks: Side::new(1),
            store: Store::default(),
            live: 0,
            ready: false,
            ask_crc: 0,
            crc: None,
            current: L3Outcome::default(),
        }
    }

    /// Empty the book and set a new depth, reusing the allocations.
    pub fn reset(&mut self, depth: usize) {
        self.depth = depth.max(1);
        self.clear();
        self.ready = false;
    }

    /// Allow handles below `max_orders` from now on.
    pub fn set_max_orders(&mut self, max_orders: u32) {
        self.max_orders = max_orders;
    }

    fn clear(&mut self) {
        // forget every live handle without touching the whole index
        let store = &mut self.store;
        for (_, lv) in self.bids.keys.drain(..).chain(self.asks.keys.drain(..)) {
            let mut slot = store.levels.get(lv as usize).map_or(NIL, |l| l.head);
            while let Some(order) = store.orders.get(slot as usize) {
                let next = order.next;
                if let Some(entry) = store.index.get_mut(order.id as usize) {
                    *entry = NIL;
                }
                slot = next;
            }
        }
        store.orders.clear();
        store.free_orders.clear();
        store.levels.clear();
        store.free_levels.clear();
        self.bids.text.clear();
        self.asks.text.clear();
        self.bids.dirty = false;
        self.asks.dirty = false;
        self.live = 0;
        self.ask_crc = 0;
        self.crc = None;
    }

    fn side_mut(&mut self, ask: bool) -> &mut Side {
        if ask { &mut self.asks } else { &mut self.bids }
    }

    fn check_handle(&self, order: u32) -> Result<(), BookError> {
        if order >= self.max_orders {
            return Err(BookError::OrderOutOfRange {
                order,
                limit: self.max_orders,
            });
        }
        Ok(())
    }

    /// Apply one message (see the module documentation).
    pub fn apply<B, A>(&mut self, snapshot: bool, bids: B, asks: A) -> Result<L3Outcome, BookError>
    where
        B: IntoIterator<Item = L3Entry>,
        A: IntoIterator<Item = L3Entry>,
    {
        self.current = L3Outcome::default();
        if snapshot {
            self.ready = false;
            self.clear();
            for entry in bids {
                self.add(false, entry)?;
            }
            for entry in asks {
                self.add(true, entry)?;
            }
        } else {
            if !self.ready {
                return Err(BookError::NoSnapshot);
            }
            self.ready = false;
            for entry in bids {
                self.event(false, entry)?;
            }
            for entry in asks {
                self.event(true, entry)?;
            }
        }
        let truncated = self.truncate(false) + self.truncate(true);
        let mut out = self.current;
        out.truncated = u32::try_from(truncated).unwrap_or(u32::MAX);
        out.computed = self.checksum();
        out.crossed = self.is_crossed();
        self.ready = true;
        Ok(out)
    }

    fn event(&mut self, ask: bool, entry: L3Entry) -> Result<(), BookError> {
        match entry.event {
            DELETE => {
                self.check_handle(entry.order)?;
                match self.store.slot_of(entry.order) {
                    Some(slot) => self.remove(slot),
                    None => self.current.unknown_deletes += 1,
                }
                Ok(())
            }
            ADD => self.add(ask, entry),
            MODIFY => self.modify(ask, entry),
            other => Err(BookError::UnknownEvent(other)),
        }
    }

    fn add(&mut self, ask: bool, e: L3Entry) -> Result<(), BookError> {
        if e.price <= 0 || e.qty < 0 {
            return Err(BookError::InvalidOrder {
                order: e.order,
                price: e.price,
                qty: e.qty,
            });
        }
        self.check_handle(e.order)?;
        if let Some(old) = self.store.slot_of(e.order) {
            self.current.duplicate_adds += 1;
            self.remove(old);
        }
        if e.qty > 0 {
            self.insert(ask, e.order, e.price, e.qty, e.ts);
        }
        Ok(())
    }

    fn modify(&mut self, ask: bool, e: L3Entry) -> Result<(), BookError> {
        self.check_handle(e.order)?;
        let Some(slot) = self.store.slot_of(e.order) else {
            self.current.unknown_modifies += 1;
            return self.add(ask, e);
        };
        if e.price <= 0 || e.qty < 0 {
            return Err(BookError::InvalidOrder {
                order: e.order,
                price: e.price,
                qty: e.qty,
            });
        }
        if e.qty == 0 {
            self.remove(slot);
            return Ok(());
        }
        let Some(order) = self.store.order(slot) else {
            return Ok(());
        };
        let (old_ask, old_price, old_ts, lv) = (order.ask, order.price, order.ts, order.level);
        if old_ask == ask && old_price == e.price {
            if let Some(order) = self.store.orders.get_mut(slot as usize) {
                order.qty = e.qty;
                order.piece = Piece::new(order.price, e.qty);
                if e.ts.is_some() {
                    order.ts = e.ts;
                }
            }
            let key = match self.store.levels.get_mut(lv as usize) {
                Some(level) => {
                    level.text_ok = false;
                    level.key
                }
                None => return Ok(()),
            };
            let side = self.side_mut(ask);
            if side.rank(key).is_ok_and(|i| i < CHECKSUM_LEVELS) {
                side.dirty = true;
            }
            return Ok(());
        }
        self.current.requeued += 1;
        self.remove(slot);
        self.insert(ask, e.order, e.price, e.qty, e.ts.or(old_ts));
        Ok(())
    }

    /// Put a new order at the back of its level (price > 0, qty > 0, handle absent).
    fn insert(&mut self, ask: bool, id: u32, price: i64, qty: i64, ts: Option<i64>) {
        let side = if ask { &mut self.asks } else { &mut self.bids };
        let key = price * side.sign; // price > 0: no overflow
        let order = Order {
            id,
            price,
            qty,
            ts,
            ask,
            level: NIL,
            prev: NIL,
            next: NIL,
            piece: Piece::new(price, qty),
        };
        let slot = self.store.new_order(order);
        let (i, lv) = match side.rank(key) {
            Ok(i) => (i, side.keys.get(i).map_or(NIL, |&(_, lv)| lv)),
            Err(i) => {
                let lv = self.store.new_level(key);
                side.keys.insert(i, (key, lv));
                (i, lv)
            }
        };
        self.store.link_back(lv, slot);
        if i < CHECKSUM_LEVELS {
            side.dirty = true;
        }
        self.live += 1;
    }

    /// Remove a resting order, dropping its level when it becomes empty.
    fn remove(&mut self, slot: u32) {
        let Some(order) = self.store.order(slot) else {
            return;
        };
        let ask = order.ask;
        let (lv, left) = self.store.unlink(slot);
        self.store.free_order(slot);
        self.live = self.live.saturating_sub(1);
        let key = self.store.levels.get(lv as usize).map_or(0, |l| l.key);
        let side = if ask { &mut self.asks } else { &mut self.bids };
        if let Ok(i) = side.rank(key) {
            if left == 0 {
                side.keys.remove(i);
                self.store.free_levels.push(lv);
            }
            if i < CHECKSUM_LEVELS {
                side.dirty = true;
            }
        }
    }

    /// Drop the levels beyond the depth (and forget their orders); returns how many.
    fn truncate(&mut self, ask: bool) -> usize {
        let depth = self.depth;
        let side = if ask { &mut self.asks } else { &mut self.bids };
        let mut dropped = 0;
        while side.keys.len() > depth {
            let Some((_, lv)) = side.keys.pop_back() else {
                break;
            };
            let mut slot = self.store.levels.get(lv as usize).map_or(NIL, |l| l.head);
            while let Some(order) = self.store.orders.get(slot as usize) {
                let next = order.next;
                self.store.free_order(slot);
                self.live = self.live.saturating_sub(1);
                slot = next;
            }
            self.store.free_levels.push(lv);
            dropped += 1;
        }
        if dropped > 0 && depth < CHECKSUM_LEVELS {
            side.dirty = true;
        }
        dropped
    }

    fn rebuild_side_text(side: &mut Side, store: &mut Store) {
        side.text.clear();
        for &(_, lv) in side.keys.iter().take(CHECKSUM_LEVELS) {
            let text = store.level_text(lv);
            side.text.extend_from_slice(text);
        }
        side.dirty = false;
    }

    /// Kraken CRC32 of the current book (cached between changes).
    pub fn checksum(&mut self) -> u32 {
        let mut stale = self.crc.is_none();
        if self.asks.dirty {
            Self::rebuild_side_text(&mut self.asks, &mut self.store);
            self.ask_crc = crc32(&self.asks.text);
            stale = true;
        }
        if self.bids.dirty {
            Self::rebuild_side_text(&mut self.bids, &mut self.store);
            stale = true;
        }
        match self.crc {
            Some(crc) if !stale => crc,
            _ => {
                let crc = continue_crc32(self.ask_crc, &self.bids.text);
                self.crc = Some(crc);
                crc
            }
        }
    }

    /// True once a snapshot was applied and no message failed since.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Mark the book invalid (a message failed before reaching it): updates are refused
    /// until the next snapshot.
    pub fn invalidate(&mut self) {
        self.ready = false;
    }

    /// The subscribed depth (price levels per side).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no order rests.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn best(&self, ask: bool) -> Option<(i64, i128)> {
        let side = if ask { &self.asks } else { &self.bids };
        let &(key, lv) = side.keys.front()?;
        let total = self.store.level_orders(lv).map(|o| i128::from(o.qty)).sum();
        Some((key * side.sign, total))
    }

    /// `(price, total qty)` of the best bid level.
    pub fn best_bid(&self) -> Option<(i64, i128)> {
        self.best(false)
    }

    /// `(price, total qty)` of the best ask level.
    pub fn best_ask(&self) -> Option<(i64, i128)> {
        self.best(true)
    }

    /// Best bid >= best ask (both sides non-empty).
    pub fn is_crossed(&self) -> bool {
        let bid = self.bids.keys.front().map(|&(k, _)| -k);
        let ask = self.asks.keys.front().map(|&(k, _)| k);
        matches!((bid, ask), (Some(b), Some(a)) if b >= a)
    }

    /// Number of price levels on one side.
    pub fn level_count(&self, ask: bool) -> usize {
        if ask {
            self.asks.keys.len()
        } else {
            self.bids.keys.len()
        }
    }

    /// Orders of one side, best level first, each level in queue order.
    pub fn orders(&self, ask: bool) -> impl Iterator<Item = OrderState> + '_ {
        let side = if ask { &self.asks } else { &self.bids };
        side.keys.iter().flat_map(move |&(_, lv)| {
            self.store.level_orders(lv).map(|o| OrderState {
                order: o.id,
                price: o.price,
                qty: o.qty,
                ts: o.ts,
            })
        })
    }

    /// The order resting under a handle.
    pub fn order(&self, id: u32) -> Option<OrderState> {
        let order = self.store.order(self.store.slot_of(id)?)?;
        Some(OrderState {
            order: order.id,
            price: order.price,
            qty: order.qty,
            ts: order.ts,
        })
    }

    /// Whether the book holds exactly these orders (per side: best level first, queue order).
    pub fn has_orders(&self, bids: &[OrderState], asks: &[OrderState]) -> bool {
        self.orders(false).eq(bids.iter().copied()) && self.orders(true).eq(asks.iter().copied())
    }
}

/// Kraken's published level3 test vector, shared by this module's tests and the batch decoder's.
#[cfg(test)]
pub(crate) mod guide_vectors {
    /// Kraken's level3 guide snapshot (BTC/USD, precision 1 / 8), as (price, qty) tokens.
    pub(crate) const GUIDE_BIDS: [(&str, &str); 21] = [
        ("44939.4", "0.88968699"),
        ("44939.4", "0.45210000"),
        ("44939.4", "0.10000000"),
        ("44939.4", "0.14296323"),
        ("44939.4", "0.25000000"),
        ("44939.4", "0.10292988"),
        ("44939.4", "0.33880000"),
        ("44939.4", "1.28140860"),
        ("44937.1", "0.03346877"),
        ("44934.7", "0.35630000"),
        ("44930.2", "0.22734299"),
        ("44930.2", "0.01000000"),
        ("44930.2", "0.05550000"),
        ("44930.2", "0.70000000"),
        ("44930.2", "0.15000000"),
        ("44928.0", "0.00105240"),
        ("44919.6", "0.33870000"),
        ("44919.5", "0.07610000"),
        ("44912.0", "0.35630000"),
        ("44909.7", "0.06690000"),
        ("44901.9", "0.00088982"),
    ];
    pub(crate) const GUIDE_ASKS: [(&str, &str); 14] = [
        ("44939.5", "4.52308393"),
        ("44939.5", "0.00111261"),
        ("44939.5", "0.00100000"),
        ("44939.5", "0.01000000"),
        ("44950.0", "0.10334926"),
        ("44953.0", "0.00064537"),
        ("44955.0", "0.00250000"),
        ("44959.6", "0.35630000"),
        ("44959.6", "0.35630000"),
        ("44960.1", "0.00338072"),
        ("44960.2", "0.88967575"),
        ("44967.0", "3.14392283"),
        ("44978.5", "0.06778960"),
        ("44979.2", "0.35630000"),
    ];
}

#[cfg(test)]
mod tests {
    use super::guide_vectors::{GUIDE_ASKS, GUIDE_BIDS};
    use super::*;
    use crate::decimal::token_units;

    fn e(event: i64, order: u32, price: i64, qty: i64) -> L3Entry {
        L3Entry {
            event,
            order,
            price,
            qty,
            ts: None,
        }
    }

    fn guide(raw: &[(&str, &str)], first_id: u32) -> Vec<L3Entry> {
        raw.iter()
            .zip(first_id..)
            .map(|((p, q), id)| {
                e(
                    0,
                    id,
                    token_units(p.as_bytes(), 1).unwrap(),
                    token_units(q.as_bytes(), 8).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn kraken_guide_snapshot() {
        let mut book = L3Book::new(10, 100);
        let out = book
            .apply(true, guide(&GUIDE_BIDS, 0), guide(&GUIDE_ASKS, 50))
            .unwrap();
        assert_eq!(out.computed, 1_063_832_831);
        assert_eq!(book.len(), 35);
        assert_eq!(book.best_bid(), Some((449394, 355788870)));
        assert_eq!(book.best_ask(), Some((449395, 453_519_654)));
        assert_eq!(book.level_count(true), 10);
        assert_eq!(book.level_count(false), 10);
    }

    #[test]
    fn fifo_queue_and_in_place_modify() {
        let mut book = L3Book::new(10, 10);
        book.apply(
            true,
            vec![e(0, 1, 100, 5), e(0, 2, 100, 7)],
            vec![e(0, 3, 101, 1)],
        )
        .unwrap();
        let ids = |b: &L3Book| b.orders(false).map(|o| o.order).collect::<Vec<_>>();
        assert_eq!(ids(&book), vec![1, 2]);
        // in-place modify keeps the queue position
        book.apply(false, vec![e(MODIFY, 1, 100, 4)], vec![])
            .unwrap();
        assert_eq!(ids(&book), vec![1, 2]);
        assert_eq!(book.order(1).unwrap().qty, 4);
        // a price change requeues at the back of the new level
        let out = book
            .apply(false, vec![e(MODIFY, 1, 99, 4), e(ADD, 4, 99, 1)], vec![])
            .unwrap();
        assert_eq!(out.requeued, 1);
        assert_eq!(ids(&book), vec![2, 1, 4]);
        // re-add of a live id replaces the stale copy
        let out = book.apply(false, vec![e(ADD, 2, 99, 3)], vec![]).unwrap();
        assert_eq!(out.duplicate_adds, 1);
        assert_eq!(ids(&book), vec![1, 4, 2]);
        let out = book
            .apply(
                false,
                vec![e(DELETE, 9, 0, 0), e(MODIFY, 8, 98, 2), e(MODIFY, 4, 99, 0)],
                vec![],
            )
            .unwrap();
        assert_eq!((out.unknown_deletes, out.unknown_modifies), (1, 1));
        assert_eq!(ids(&book), vec![1, 2, 8]);
        assert_eq!(book.best_bid(), Some((99, 7)));
    }

    #[test]
    fn modify_keeps_timestamp_unless_given() {
        let mut book = L3Book::new(10, 10);
        let mut a = e(0, 1, 100, 5);
        a.ts = Some(7);
        book.apply(true, vec![a], vec![]).unwrap();
        book.apply(false, vec![e(MODIFY, 1, 101, 5)], vec![])
            .unwrap();
        assert_eq!(book.order(1).unwrap().ts, Some(7));
        let mut m = e(MODIFY, 1, 101, 6);
        m.ts = Some(9);
        book.apply(false, vec![m], vec![]).unwrap();
        assert_eq!(book.order(1).unwrap().ts, Some(9));
    }

    #[test]
    fn side_change_and_cross_side_duplicates() {
        let mut book = L3Book::new(10, 10);
        book.apply(true, vec![e(0, 1, 100, 5)], vec![e(0, 2, 101, 1)])
            .unwrap();
        // a modify carried on the ask side moves the bid order there
        let out = book
            .apply(false, vec![], vec![e(MODIFY, 1, 100, 5)])
            .unwrap();
        assert_eq!(out.requeued, 1);
        assert_eq!(book.level_count(false), 0);
        assert_eq!(
            book.orders(true).map(|o| o.order).collect::<Vec<_>>(),
            vec![1, 2]
        );
        // snapshot with a duplicate id across sides: the later copy wins
        let out = book
            .apply(true, vec![e(0, 3, 50, 1)], vec![e(0, 3, 60, 1)])
            .unwrap();
        assert_eq!(out.duplicate_adds, 1);
        assert_eq!(book.len(), 1);
        assert_eq!(book.best_ask(), Some((60, 1)));
    }

    #[test]
    fn truncation_forgets_orders() {
        let mut book = L3Book::new(2, 10);
        book.apply(true, vec![e(0, 1, 100, 1), e(0, 2, 99, 1)], vec![])
            .unwrap();
        let out = book.apply(false, vec![e(ADD, 3, 101, 1)], vec![]).unwrap();
        assert_eq!(out.truncated, 1);
        assert!(book.order(2).is_none());
        // the truncated order comes back as an add, not a duplicate
        let out = book
            .apply(false, vec![e(DELETE, 3, 0, 0), e(ADD, 2, 99, 1)], vec![])
            .unwrap();
        assert_eq!(out.duplicate_adds, 0);
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn errors_leave_the_book_invalid() {
        let mut book = L3Book::new(10, 10);
        assert_eq!(
            book.apply(false, vec![], vec![]),
            Err(BookError::NoSnapshot)
        );
        book.apply(true, vec![e(0, 1, 100, 5)], vec![]).unwrap();
        assert_eq!(
            book.apply(false, vec![e(7, 1, 100, 5)], vec![]),
            Err(BookError::UnknownEvent(7))
        );
        assert_eq!(
            book.apply(false, vec![], vec![]),
            Err(BookError::NoSnapshot)
        );
        book.apply(true, vec![e(0, 1, 100, 5)], vec![]).unwrap();
        assert_eq!(
            book.apply(false, vec![e(MODIFY, 1, 0, 5)], vec![]),
            Err(BookError::InvalidOrder {
                order: 1,
                price: 0,
                qty: 5
            })
        );
        book.apply(true, vec![], vec![]).unwrap();
        assert_eq!(
            book.apply(false, vec![e(ADD, 10, 5, 5)], vec![]),
            Err(BookError::OrderOutOfRange {
                order: 10,
                limit: 10
            })
        );
        // zero-qty add of an unknown id: nothing rests, no error
        book.apply(true, vec![e(0, 1, 100, 0)], vec![]).unwrap();
        assert!(book.is_empty());
    }

    #[test]
    fn cached_checksum_equals_a_fresh_computation() {
        let mut book = L3Book::new(12, 64);
        book.apply(true, vec![e(0, 0, 1000, 1)], vec![e(0, 1, 1001, 1)])
            .unwrap();
        let mut x: i64 = 11;
        for _ in 0..3000 {
            x = (x * 1_103_515_245 + 12345) % 2_147_483_648;
            let id = (x % 64) as u32;
            let event = 1 + (x / 64) % 3;
            let price = 980 + (x / 256) % 40;
            let qty = (x / 16384) % 5;
            let entry = e(event, id, price, qty);
            let (b, a) = if price <= 1000 {
                (vec![entry], vec![])
            } else {
                (vec![], vec![entry])
            };
            let got = book.apply(false, b, a).unwrap().computed;
            let bids: Vec<_> = book
                .orders(false)
                .map(|o| e(0, o.order, o.price, o.qty))
                .collect();
            let asks: Vec<_> = book
                .orders(true)
                .map(|o| e(0, o.order, o.price, o.qty))
                .collect();
            let mut fresh = L3Book::new(12, 64);
            assert_eq!(fresh.apply(true, bids, asks).unwrap().computed, got);
        }
    }

    #[test]
    fn reset_reuses_the_book() {
        let mut book = L3Book::new(10, 100);
        book.apply(true, guide(&GUIDE_BIDS, 0), guide(&GUIDE_ASKS, 50))
            .unwrap();
        book.reset(10);
        assert!(!book.ready() && book.is_empty());
        assert!(book.order(0).is_none());
        let out = book
            .apply(true, guide(&GUIDE_BIDS, 0), guide(&GUIDE_ASKS, 50))
            .unwrap();
        assert_eq!(out.computed, 1_063_832_831);
    }
}
