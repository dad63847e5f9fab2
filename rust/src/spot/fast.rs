//! The fast path of [`super::classify`] for the frames Kraken actually sends on the book
//! channels: `{"channel":"book"|"level3","type":"snapshot"|"update","data":[...]}` with the
//! items, levels and orders holding only the fields the decoder reads.
//!
//! A hand-written scanner reads such a frame in one pass, with no serde machinery, and gives
//! the same [`Data`] the serde path would. It accepts only a subset of JSON where that is
//! certain: every key known and seen once, `channel` before `data`, strings without escapes
//! or control characters, numbers in JSON's exact grammar, a `checksum` that is a plain
//! `u32`, an `event` that is one of the three names, the whole frame consumed (whitespace
//! allowed where JSON allows it). Anything else, valid or not, returns `None` and the frame
//! goes through the serde path, which decides (and explains) it. So for every accepted frame
//! the result is by construction the serde path's, and every reject keeps its reason and
//! detail. The `fast_path_equals_serde_path` tests check this on real frames and mutations.

use std::borrow::Cow;

use super::{Data, Level, Order, Pooled, RawItem, Scratch, Token, take};

/// A frame's `type` (`snapshot` or not) and its data (`book` or `level3` items), or None
/// when the frame is not in the fast path's subset.
pub(super) fn envelope<'a>(text: &'a str, scratch: &mut Scratch) -> Option<(bool, Data<'a>)> {
    let mut cur = Cursor {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        scratch,
    };
    // Kraken's spelling, one comparison: then only `data` and the closing brace follow (any
    // other key after these three would be a duplicate or unknown, i.e. None either way)
    for (prefix, level3, snapshot) in PREFIXES {
        if cur.lit(prefix) {
            let data = cur.data(level3)?;
            if !cur.eat(b'}') {
                return None;
            }
            cur.ws();
            return (cur.pos == cur.bytes.len()).then_some((snapshot, data));
        }
    }
    if !cur.eat(b'{') {
        return None;
    }
    let mut level3: Option<bool> = None;
    let mut snapshot: Option<bool> = None;
    let mut data: Option<Data<'_>> = None;
    loop {
        let key = cur.string()?;
        if !cur.eat(b':') {
            return None;
        }
        match key {
            "channel" if level3.is_none() => {
                level3 = Some(match cur.string()? {
                    "book" => false,
                    "level3" => true,
                    _ => return None,
                });
            }
            "type" if snapshot.is_none() => {
                snapshot = Some(match cur.string()? {
                    "snapshot" => true,
                    "update" => false,
                    _ => return None,
                });
            }
            "data" if data.is_none() => data = Some(cur.data(level3?)?),
            _ => return None,
        }
        if cur.eat(b',') {
            continue;
        }
        if cur.eat(b'}') {
            break;
        }
        return None;
    }
    cur.ws();
    if cur.pos != cur.bytes.len() {
        return None;
    }
    Some((snapshot?, data?))
}

/// `{"channel":C,"type":T,"data":` as Kraken writes it: (text, level3, snapshot).
const PREFIXES: [(&[u8], bool, bool); 4] = [
    (
        br#"{"channel":"book","type":"update","data":"#,
        false,
        false,
    ),
    (
        br#"{"channel":"level3","type":"update","data":"#,
        true,
        false,
    ),
    (
        br#"{"channel":"book","type":"snapshot","data":"#,
        false,
        true,
    ),
    (
        br#"{"channel":"level3","type":"snapshot","data":"#,
        true,
        true,
    ),
];

struct Cursor<'a, 's> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    scratch: &'s mut Scratch,
}

/// What a list of levels or orders holds.
trait Entry<'a>: Pooled {
    fn read(cur: &mut Cursor<'a, '_>) -> Option<Self>;
}

impl<'a> Entry<'a> for Level<'a> {
    fn read(cur: &mut Cursor<'a, '_>) -> Option<Self> {
        cur.level()
    }
}

impl<'a> Entry<'a> for Order<'a> {
    fn read(cur: &mut Cursor<'a, '_>) -> Option<Self> {
        cur.order()
    }
}

impl<'a> Cursor<'a, '_> {
    /// Skip JSON whitespace.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Consume `c` (after whitespace) if it is next.
    #[inline]
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.bytes.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consume the exact bytes `text` if they are next (no whitespace skipped).
    #[inline]
    fn lit(&mut self, text: &[u8]) -> bool {
        match self.bytes.get(self.pos..self.pos + text.len()) {
            Some(next) if next == text => {
                self.pos += text.len();
                true
            }
            _ => false,
        }
    }

    /// A string without escapes or control characters: its content.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.pos;
        let end = self.string_end(start)?;
        if self.bytes.get(end) != Some(&b'"') {
            return None;
        }
        self.pos = end + 1;
        // both ends are ASCII quotes, so the slice is on char boundaries
        self.text.get(start..end)
    }

    /// Index of the first `"`, `\\` or control character at or after `at`, 8 bytes a step.
    #[inline]
    fn string_end(&self, mut at: usize) -> Option<usize> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.bytes.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            // a byte's high bit is set where it is `"`, `\\` or below 0x20 (borrows can only
            // mark bytes after the first such byte, so the lowest mark is exact)
            let quote = x ^ (ONES * u64::from(b'"'));
            let slash = x ^ (ONES * u64::from(b'\\'));
            let marks = (quote.wrapping_sub(ONES) & !quote
                | slash.wrapping_sub(ONES) & !slash
                | x.wrapping_sub(ONES * 0x20) & !x)
                & HIGHS;
            if marks != 0 {
                return Some(at + (marks.trailing_zeros() / 8) as usize);
            }
            at += 8;
        }
        let rest = self.bytes.get(at..)?;
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        Some(at + len)
    }

    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number in JSON's grammar (`-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`): its text.
    fn number(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return None,
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        self.text.get(start..self.pos)
    }

    /// A price or quantity: a number's text or a string's content (as `raw_token`).
    #[inline]
    fn token(&mut self) -> Option<Token<'a>> {
        self.ws();
        match self.bytes.get(self.pos) {
            Some(b'"') => self.string().map(Token),
            _ => self.number().map(Token),
        }
    }

    /// A `checksum`: a plain non-negative integer within u32.
    fn checksum(&mut self) -> Option<u32> {
        let text = self.number()?;
        if text.len() > 10 || !text.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let value = text
            .bytes()
            .fold(0u64, |acc, c| acc * 10 + u64::from(c - b'0'));
        u32::try_from(value).ok()
    }

    /// The `data` list of a `book` (or `level3`) message.
    fn data(&mut self, level3: bool) -> Option<Data<'a>> {
        Some(if level3 {
            let items = take(&mut self.scratch.raw_l3);
            Data::Level3(self.list(items, Cursor::item::<Order<'a>>)?)
        } else {
            let items = take(&mut self.scratch.raw_books);
            Data::Book(self.list(items, Cursor::item::<Level<'a>>)?)
        })
    }

    /// `[a, b, ...]` of `one`, appended to `out` (empty).
    fn list<T>(
        &mut self,
        mut out: Vec<T>,
        mut one: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(out);
        }
        loop {
            out.push(one(self)?);
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Some(out);
            }
            return None;
        }
    }

    /// `{"key": value, ...}`: `field` reads each value and says whether the key is known (and
    /// not seen before); an empty object is refused.
    #[inline]
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        loop {
            let key = match self.item_key() {
                Some(key) => key,
                None => {
                    let key = self.string()?;
                    if !self.eat(b':') {
                        return None;
                    }
                    key
                }
            };
            field(self, key)?;
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                return Some(());
            }
            return None;
        }
    }

    /// A book item's key and its colon as Kraken writes them (`"bids":`), found by its first
    /// letter and one comparison; else None with `pos` unchanged (the general key path).
    #[inline]
    fn item_key(&mut self) -> Option<&'static str> {
        let (key, text): (&'static str, &[u8]) = match self.bytes.get(self.pos + 1) {
            Some(b's') => ("symbol", br#""symbol":"#),
            Some(b'b') => ("bids", br#""bids":"#),
            Some(b'a') => ("asks", br#""asks":"#),
            Some(b'c') => ("checksum", br#""checksum":"#),
            Some(b't') => ("timestamp", br#""timestamp":"#),
            _ => return None,
        };
        self.lit(text).then_some(key)
    }

    /// A level as Kraken writes it, `{"price":P,"qty":Q}`, else None with `pos` unchanged.
    #[inline]
    fn kraken_level(&mut self) -> Option<Level<'a>> {
        let start = self.pos;
        let level = (|| {
            if !self.lit(b"{\"price\":") {
                return None;
            }
            let price = self.token()?;
            if !self.lit(b",\"qty\":") {
                return None;
            }
            let qty = self.token()?;
            self.lit(b"}").then_some(Level {
                price,
                qty,
                bad: None,
            })
        })();
        if level.is_none() {
            self.pos = start;
        }
        level
    }

    fn level(&mut self) -> Option<Level<'a>> {
        if let Some(level) = self.kraken_level() {
            return Some(level);
        }
        let (mut price, mut qty) = (None, None);
        self.object(|cur, key| {
            match key {
                "price" if price.is_none() => price = Some(cur.token()?),
                "qty" if qty.is_none() => qty = Some(cur.token()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(Level {
            price: price?,
            qty: qty?,
            bad: None,
        })
    }

    /// An order as Kraken writes it, `{["event":E,]"order_id":I,"limit_price":P,"order_qty":Q,
    /// "timestamp":T}`, else None with `pos` unchanged.
    #[inline]
    fn kraken_order(&mut self) -> Option<Order<'a>> {
        let start = self.pos;
        let order = (|| {
            let event = if self.lit(b"{\"event\":\"add\",") {
                crate::l3::ADD
            } else if self.lit(b"{\"event\":\"delete\",") {
                crate::l3::DELETE
            } else if self.lit(b"{\"event\":\"modify\",") {
                crate::l3::MODIFY
            } else if self.lit(b"{") {
                0
            } else {
                return None;
            };
            if !self.lit(b"\"order_id\":") {
                return None;
            }
            let order_id = self.string()?;
            if !self.lit(b",\"limit_price\":") {
                return None;
            }
            let price = self.token()?;
            if !self.lit(b",\"order_qty\":") {
                return None;
            }
            let qty = self.token()?;
            if !self.lit(b",\"timestamp\":") {
                return None;
            }
            let timestamp = self.string()?;
            self.lit(b"}").then_some(Order {
                order_id: Cow::Borrowed(order_id),
                price,
                qty,
                ts_ns: 0,
                event,
                timestamp: Cow::Borrowed(timestamp),
                bad: None,
            })
        })();
        if order.is_none() {
            self.pos = start;
        }
        order
    }

    fn order(&mut self) -> Option<Order<'a>> {
        if let Some(order) = self.kraken_order() {
            return Some(order);
        }
        let (mut order_id, mut price, mut qty, mut timestamp, mut event) =
            (None, None, None, None, None);
        self.object(|cur, key| {
            match key {
                "order_id" if order_id.is_none() => order_id = Some(cur.string()?),
                "limit_price" if price.is_none() => price = Some(cur.token()?),
                "order_qty" if qty.is_none() => qty = Some(cur.token()?),
                "timestamp" if timestamp.is_none() => timestamp = Some(cur.string()?),
                "event" if event.is_none() => {
                    event = Some(match cur.string()? {
                        "add" => crate::l3::ADD,
                        "modify" => crate::l3::MODIFY,
                        "delete" => crate::l3::DELETE,
                        _ => return None,
                    });
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(Order {
            order_id: Cow::Borrowed(order_id?),
            price: price?,
            qty: qty?,
            ts_ns: 0,
            event: event.unwrap_or(0),
            timestamp: Cow::Borrowed(timestamp?),
            bad: None,
        })
    }

    fn item<L: Entry<'a>>(&mut self) -> Option<RawItem<'a, L>> {
        let (mut symbol, mut bids, mut asks, mut checksum, mut timestamp) =
            (None, None, None, None, None);
        self.object(|cur, key| {
            match key {
                "symbol" if symbol.is_none() => symbol = Some(cur.string()?),
                "bids" if bids.is_none() => {
                    let out = L::take(cur.scratch);
                    bids = Some(cur.list(out, L::read)?);
                }
                "asks" if asks.is_none() => {
                    let out = L::take(cur.scratch);
                    asks = Some(cur.list(out, L::read)?);
                }
                "checksum" if checksum.is_none() => checksum = Some(cur.checksum()?),
                "timestamp" if timestamp.is_none() => timestamp = Some(cur.string()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(RawItem {
            symbol: Cow::Borrowed(symbol?),
            bids: bids?,
            asks: asks?,
            checksum,
            timestamp: timestamp.map(Cow::Borrowed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_end_finds_the_first_special_byte() {
        // every byte value at every position of a 20-byte run (after another special byte
        // further on): the word-at-a-time scan agrees with a byte loop
        let mut scratch = Scratch::default();
        for len in [0usize, 3, 8, 13, 20] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    bytes.push(b'"');
                    if len > 2 {
                        bytes[len - 1] = 0x01;
                    }
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let cur = Cursor {
                        text: &text,
                        bytes: text.as_bytes(),
                        pos: 0,
                        scratch: &mut scratch,
                    };
                    let want = text
                        .bytes()
                        .position(|c| c == b'"' || c == b'\\' || c < 0x20);
                    assert_eq!(cur.string_end(0), want, "{bytes:?}");
                }
            }
        }
    }
}
