//! Spot L2 book (`book` channel): exact state machine with Kraken's checksum.
//!
//! Same semantics as the Python reference model `recorder/book/l2.py` (`L2Book.apply_units`):
//! a snapshot clears the book; levels are applied bids first then asks, each in array order;
//! `qty == 0` removes a level (a removal of an absent level is counted, not an error); after
//! the message each side is truncated to the subscribed depth (Kraken sends no delete for
//! levels leaving the window); then the CRC32 of the 10 best levels per side is computed.
//! A price `<= 0` or a quantity `< 0` is a [`BookError`] and leaves the book invalid until the
//! next snapshot, as does an update before any snapshot.
//!
//! Values are units (`i64`, the value scaled to the pair's precision). Each side is a
//! best-first `VecDeque` of `(key, qty)` with `key = price` for asks and `-price` for bids, so
//! the levels near the top (where nearly all changes happen) move few elements and a
//! truncation pops from the back. Each side caches the checksum text of its 10 best levels
//! and the pieces it was joined from (a rebuild renders only the levels that changed);
//! a change below the top 10 leaves it valid, and the book caches the ask CRC and the final
//! CRC, so a checksum costs at most a rebuild of the changed side's text and one CRC pass.

use std::collections::VecDeque;

use crate::checksum::{CHECKSUM_LEVELS, continue_crc32, crc32};
use crate::decimal::Piece;
use crate::error::BookError;

/// What applying one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Outcome {
    /// Kraken CRC32 of the book after the message.
    pub computed: u32,
    /// Best bid >= best ask after the message.
    pub crossed: bool,
    /// `qty == 0` levels whose price was not in the book.
    pub absent_removals: u32,
    /// Levels dropped by depth truncation.
    pub truncated: u32,
}

#[derive(Debug, Clone)]
struct Side {
    /// +1 for asks (key = price), -1 for bids (key = -price): keys ascend best first.
    sign: i64,
    levels: VecDeque<(i64, i64)>,
    /// Checksum text of the 10 best levels (`text[..text_len]`, written with fixed-size
    /// copies, hence the room after it); stale while `dirty`.
    text: Box<[u8; TEXT_ROOM]>,
    text_len: usize,
    dirty: bool,
    /// `(key, qty, piece)` of the levels in `text`, best first, in `pieces[current]` (the other
    /// array receives the next rebuild): a rebuild reuses the piece of every level that did not
    /// change and renders only the others.
    pieces: Box<[[(i64, i64, Piece); CHECKSUM_LEVELS]; 2]>,
    current: usize,
    count: usize,
}

/// Room for the checksum text of 10 levels plus one piece's fixed-size copy.
const TEXT_ROOM: usize = (CHECKSUM_LEVELS + 1) * Piece::CAPACITY;

impl Side {
    fn new(sign: i64) -> Self {
        Side {
            sign,
            levels: VecDeque::new(),
            text: Box::new([0u8; TEXT_ROOM]),
            text_len: 0,
            dirty: false,
            pieces: Box::new([[(0, 0, Piece::EMPTY); CHECKSUM_LEVELS]; 2]),
            current: 0,
            count: 0,
        }
    }

    fn clear(&mut self) {
        self.levels.clear();
        self.text_len = 0;
        self.count = 0;
        self.dirty = false;
    }

    /// Set one level (`qty == 0` removes it); false for the removal of an absent level.
    fn set(&mut self, price: i64, qty: i64) -> Result<bool, BookError> {
        if price <= 0 || qty < 0 {
            return Err(BookError::InvalidLevel { price, qty });
        }
        let key = price * self.sign; // price > 0: no overflow
        match self.levels.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(i) => {
                if qty > 0 {
                    if let Some(level) = self.levels.get_mut(i) {
                        level.1 = qty;
                    }
                } else {
                    self.levels.remove(i);
                }
                self.dirty |= i < CHECKSUM_LEVELS;
                Ok(true)
            }
            Err(i) => {
                if qty == 0 {
                    return Ok(false);
                }
                self.levels.insert(i, (key, qty));
                self.dirty |= i < CHECKSUM_LEVELS;
                Ok(true)
            }
        }
    }

    /// Drop the levels beyond `depth`; returns how many.
    fn truncate(&mut self, depth: usize) -> usize {
        let excess = self.levels.len().saturating_sub(depth);
        if excess > 0 {
            self.levels.truncate(depth);
            self.dirty |= depth < CHECKSUM_LEVELS;
        }
        excess
    }

    fn rebuild_text(&mut self) {
        let [first, second] = &mut *self.pieces;
        let (old, fresh) = if self.current == 0 {
            (&*first, second)
        } else {
            (&*second, first)
        };
        let old = old.get(..self.count).unwrap_or_default();
        let (mut j, mut n, mut len) = (0, 0, 0);
        for (&(key, qty), slot) in self.levels.iter().zip(fresh.iter_mut()) {
            // both lists ascend by key: walk the old one alongside
            while old.get(j).is_some_and(|&(k, _, _)| k < key) {
                j += 1;
            }
            let piece = match old.get(j) {
                Some(&(k, q, piece)) if k == key && q == qty => piece,
                _ => Piece::new(key * self.sign, qty),
            };
            *slot = (key, qty, piece);
            n += 1;
            len = piece.write_at(&mut self.text[..], len);
        }
        self.current ^= 1;
        self.count = n;
        self.text_len = len;
        self.dirty = false;
    }

    fn text(&self) -> &[u8] {
        self.text.get(..self.text_len).unwrap_or_default()
    }

    fn best(&self) -> Option<(i64, i64)> {
        self.levels
            .front()
            .map(|&(key, qty)| (key * self.sign, qty))
    }

    fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.levels.iter().map(|&(key, qty)| (key * self.sign, qty))
    }
}

/// Kraken spot L2 book for one symbol at one subscribed depth, in units.
#[derive(Debug, Clone)]
pub struct L2Book {
    depth: usize,
    bids: Side,
    asks: Side,
    ready: bool,
    ask_crc: u32,
    crc: Option<u32>,
}

impl L2Book {
    /// An empty book (not ready until a snapshot). `depth` is at least 1.
    pub fn new(depth: usize) -> Self {
        L2Book {
            depth: depth.max(1),
            bids: Side::new(-1),
            asks: Side::new(1),
            ready: false,
            ask_crc: 0,
            crc: None,
        }
    }

    /// Empty the book and set a new depth (a fresh book, reusing the allocations).
    pub fn reset(&mut self, depth: usize) {
        self.depth = depth.max(1);
        self.clear();
        self.ready = false;
    }

    fn clear(&mut self) {
        self.bids.clear();
        self.asks.clear();
        self.ask_crc = 0;
        self.crc = None;
    }

    /// Apply one message: `snapshot` replaces the book, else an update (needs a valid book).
    /// Levels are `(price_units, qty_units)`, bids applied first, each side in array order.
    pub fn apply<B, A>(&mut self, snapshot: bool, bids: B, asks: A) -> Result<L2Outcome, BookError>
    where
        B: IntoIterator<Item = (i64, i64)>,
        A: IntoIterator<Item = (i64, i64)>,
    {
        if snapshot {
            self.clear();
        } else if !self.ready {
            return Err(BookError::NoSnapshot);
        }
        self.ready = false;
        let mut absent = 0u32;
        for (price, qty) in bids {
            if !self.bids.set(price, qty)? {
                absent += 1;
            }
        }
        for (price, qty) in asks {
            if !self.asks.set(price, qty)? {
                absent += 1;
            }
        }
        let truncated = self.bids.truncate(self.depth) + self.asks.truncate(self.depth);
        let computed = self.checksum();
        self.ready = true;
        Ok(L2Outcome {
            computed,
            crossed: self.is_crossed(),
            absent_removals: absent,
            truncated: u32::try_from(truncated).unwrap_or(u32::MAX),
        })
    }

    /// Kraken CRC32 of the current book (cached between changes).
    pub fn checksum(&mut self) -> u32 {
        let mut stale = self.crc.is_none();
        if self.asks.dirty {
            self.asks.rebuild_text();
            self.ask_crc = crc32(self.asks.text());
            stale = true;
        }
        if self.bids.dirty {
            self.bids.rebuild_text();
            stale = true;
        }
        match self.crc {
            Some(crc) if !stale => crc,
            _ => {
                let crc = continue_crc32(self.ask_crc, self.bids.text());
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

    /// The subscribed depth.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// `(price, qty)` of the best bid.
    pub fn best_bid(&self) -> Option<(i64, i64)> {
        self.bids.best()
    }

    /// `(price, qty)` of the best ask.
    pub fn best_ask(&self) -> Option<(i64, i64)> {
        self.asks.best()
    }

    /// Best bid >= best ask (both sides non-empty).
    pub fn is_crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some((b, _)), Some((a, _))) if b >= a)
    }

    /// Levels of one side (`ask` true for asks), best first, as `(price, qty)` units.
    pub fn levels(&self, ask: bool) -> impl Iterator<Item = (i64, i64)> + '_ {
        if ask {
            self.asks.iter()
        } else {
            self.bids.iter()
        }
    }

    /// Quantity of the level at `price` on one side (`ask` true for asks), if present.
    pub fn level_qty(&self, ask: bool, price: i64) -> Option<i64> {
        let side = if ask { &self.asks } else { &self.bids };
        let key = price.checked_mul(side.sign)?;
        let i = side.levels.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        side.levels.get(i).map(|&(_, qty)| qty)
    }

    /// Whether the book holds exactly these levels (best first per side), e.g. a checkpoint.
    pub fn has_levels(&self, bids: &[(i64, i64)], asks: &[(i64, i64)]) -> bool {
        self.bids.levels.len() == bids.len()
            && self.asks.levels.len() == asks.len()
            && self.bids.iter().eq(bids.iter().copied())
            && self.asks.iter().eq(asks.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decimal::token_units;

    fn lv(price: &str, qty: &str, pp: u8, qp: u8) -> (i64, i64) {
        (
            token_units(price.as_bytes(), pp).unwrap(),
            token_units(qty.as_bytes(), qp).unwrap(),
        )
    }

    fn levels(raw: &[(&str, &str)], pp: u8, qp: u8) -> Vec<(i64, i64)> {
        raw.iter().map(|(p, q)| lv(p, q, pp, qp)).collect()
    }

    const GUIDE_BIDS: [(&str, &str); 10] = [
        ("45283.5", "0.10000000"),
        ("45283.4", "1.54582015"),
        ("45282.1", "0.10000000"),
        ("45281.0", "0.10000000"),
        ("45280.3", "1.54592586"),
        ("45279.0", "0.07990000"),
        ("45277.6", "0.03310103"),
        ("45277.5", "0.30000000"),
        ("45277.3", "1.54602737"),
        ("45276.6", "0.15445238"),
    ];
    const GUIDE_ASKS: [(&str, &str); 10] = [
        ("45285.2", "0.00100000"),
        ("45286.4", "1.54571953"),
        ("45286.6", "1.54571109"),
        ("45289.6", "1.54560911"),
        ("45290.2", "0.15890660"),
        ("45291.8", "1.54553491"),
        ("45294.7", "0.04454749"),
        ("45296.1", "0.35380000"),
        ("45297.5", "0.09945542"),
        ("45299.5", "0.18772827"),
    ];

    #[test]
    fn kraken_guide_snapshot() {
        let mut book = L2Book::new(10);
        let out = book
            .apply(true, levels(&GUIDE_BIDS, 1, 8), levels(&GUIDE_ASKS, 1, 8))
            .unwrap();
        assert_eq!(out.computed, 3_310_070_434);
        assert!(!out.crossed);
        assert_eq!(book.best_bid(), Some((452835, 10_000_000)));
        assert_eq!(book.best_ask(), Some((452852, 100_000)));
    }

    #[test]
    fn guide_snapshot_in_any_order_with_trimmed_tokens() {
        // doc examples print trimmed values (0.1): units at the pair precision still match
        let mut bids = GUIDE_BIDS.to_vec();
        bids.reverse();
        let trimmed: Vec<(String, String)> = bids
            .iter()
            .map(|(p, q)| (p.to_string(), q.trim_end_matches('0').to_string()))
            .collect();
        let trimmed: Vec<(i64, i64)> = trimmed.iter().map(|(p, q)| lv(p, q, 1, 8)).collect();
        let mut book = L2Book::new(25);
        let out = book
            .apply(true, trimmed, levels(&GUIDE_ASKS, 1, 8))
            .unwrap();
        assert_eq!(out.computed, 3_310_070_434);
    }

    #[test]
    fn matic_channel_page_snapshot_and_update() {
        // Kraken's book channel page (MATIC/USD, precision 4 / 8): trimmed doc tokens
        let bids = [
            ("0.5666", "4831.75496356"),
            ("0.5665", "6658.22734739"),
            ("0.5664", "18724.91513344"),
            ("0.5663", "11563.92544914"),
            ("0.5662", "14006.65365711"),
            ("0.5661", "17454.85679807"),
            ("0.566", "18097.1547"),
            ("0.5659", "33644.89175666"),
            ("0.5658", "148.3464"),
            ("0.5657", "606.70854372"),
        ];
        let asks = [
            ("0.5668", "4410.79769741"),
            ("0.5669", "4655.40412487"),
            ("0.567", "49844.89424998"),
            ("0.5671", "24306.41678"),
            ("0.5672", "29783.25223475"),
            ("0.5673", "57234.71239278"),
            ("0.5674", "45065.04744"),
            ("0.5675", "5912.76380354"),
            ("0.5676", "42514.92434778"),
            ("0.5677", "36304.0847022"),
        ];
        let mut book = L2Book::new(10);
        let out = book
            .apply(true, levels(&bids, 4, 8), levels(&asks, 4, 8))
            .unwrap();
        assert_eq!(out.computed, 2_439_117_997);
        let update = levels(&[("0.5657", "1098.3947558")], 4, 8);
        assert_eq!(
            book.apply(false, update, Vec::new()).unwrap().computed,
            2_114_181_697
        );
    }

    #[test]
    fn truncation_and_reentry() {
        let mut book = L2Book::new(2);
        book.apply(true, vec![(100, 1), (99, 2)], vec![(101, 1), (102, 2)])
            .unwrap();
        // a better bid pushes 99 out of the window; removing an absent level is counted
        let out = book
            .apply(false, vec![(100, 3), (98, 0), (1005, 1)], vec![])
            .unwrap();
        assert_eq!((out.truncated, out.absent_removals), (1, 1));
        assert_eq!(
            book.levels(false).collect::<Vec<_>>(),
            vec![(1005, 1), (100, 3)]
        );
        assert!(out.crossed);
        // 99 was truncated away: its removal is absent; it may come back as a new level
        let out = book
            .apply(false, vec![(1005, 0), (99, 0), (99, 5)], vec![])
            .unwrap();
        assert_eq!((out.truncated, out.absent_removals), (0, 1));
        assert_eq!(
            book.levels(false).collect::<Vec<_>>(),
            vec![(100, 3), (99, 5)]
        );
        assert!(!out.crossed);
        // two levels pushed out at once
        let out = book
            .apply(false, vec![], vec![(1001, 1), (1002, 1)])
            .unwrap();
        assert_eq!(out.truncated, 2);
        assert_eq!(
            book.levels(true).collect::<Vec<_>>(),
            vec![(101, 1), (102, 2)]
        );
    }

    #[test]
    fn checksum_uses_only_ten_levels() {
        let mut deep = L2Book::new(1000);
        let mut shallow = L2Book::new(10);
        let bids: Vec<(i64, i64)> = (1..=50).map(|i| (1000 - i, i)).collect();
        let asks: Vec<(i64, i64)> = (1..=50).map(|i| (1000 + i, i)).collect();
        let a = deep
            .apply(true, bids.clone(), asks.clone())
            .unwrap()
            .computed;
        let b = shallow.apply(true, bids, asks).unwrap().computed;
        assert_eq!(a, b);
        // a deep change leaves the checksum, a top change moves it
        assert_eq!(
            deep.apply(false, vec![(960, 7)], vec![]).unwrap().computed,
            a
        );
        assert_ne!(
            deep.apply(false, vec![(999, 0)], vec![]).unwrap().computed,
            a
        );
        assert_eq!(deep.levels(false).count(), 49);
    }

    #[test]
    fn zero_qty_levels_and_errors() {
        let mut book = L2Book::new(10);
        assert_eq!(
            book.apply(false, vec![(1, 1)], vec![]),
            Err(BookError::NoSnapshot)
        );
        let out = book.apply(true, vec![(5, 0)], vec![(6, 1)]).unwrap();
        assert_eq!(out.absent_removals, 1); // a zero-qty snapshot level is ignored
        assert_eq!(book.levels(false).count(), 0);
        assert_eq!(
            book.apply(false, vec![(0, 1)], vec![]),
            Err(BookError::InvalidLevel { price: 0, qty: 1 })
        );
        assert!(!book.ready());
        assert_eq!(
            book.apply(false, vec![(1, 1)], vec![]),
            Err(BookError::NoSnapshot)
        );
        assert_eq!(
            book.apply(true, vec![(5, -1)], vec![]),
            Err(BookError::InvalidLevel { price: 5, qty: -1 })
        );
        book.apply(true, vec![], vec![]).unwrap();
        assert!(book.ready());
        assert_eq!(book.checksum(), 0); // crc32 of nothing
    }

    #[test]
    fn cached_checksum_equals_a_fresh_computation() {
        // random-ish walk: after every message the cached CRC equals one from scratch
        let mut book = L2Book::new(12);
        book.apply(true, vec![(1000, 1)], vec![(1001, 1)]).unwrap();
        let mut x: i64 = 7;
        for _ in 0..2000 {
            x = (x * 1_103_515_245 + 12345) % 2_147_483_648;
            let price = 950 + x % 100;
            let qty = (x / 100) % 4;
            let (b, a) = if price <= 1000 {
                (vec![(price, qty)], vec![])
            } else {
                (vec![], vec![(price, qty)])
            };
            let got = book.apply(false, b, a).unwrap().computed;
            let mut fresh = L2Book::new(12);
            let bids: Vec<_> = book.levels(false).collect();
            let asks: Vec<_> = book.levels(true).collect();
            assert_eq!(fresh.apply(true, bids, asks).unwrap().computed, got);
        }
    }

    #[test]
    fn has_levels_compares_the_whole_book() {
        let mut book = L2Book::new(10);
        book.apply(true, vec![(10, 1), (9, 2)], vec![(11, 3)])
            .unwrap();
        assert!(book.has_levels(&[(10, 1), (9, 2)], &[(11, 3)]));
        assert!(!book.has_levels(&[(10, 1)], &[(11, 3)]));
        assert!(!book.has_levels(&[(10, 1), (9, 3)], &[(11, 3)]));
        assert!(!book.has_levels(&[(10, 1), (9, 2)], &[]));
    }
}
