//! Archive replay: rebuild every `book` / `level3` epoch from the archive's columns and compare
//! every recomputed checksum with the one Kraken sent (the kernel of `recorder verify`).
//!
//! Rows are grouped by `(symbol, epoch)` in order of first appearance (rows keep their order
//! inside a group). In a group, a message ends at each row that carries a checksum; its kind
//! is a snapshot when that row's event is 0. Its rows are applied bids first (side 0) then asks
//! (any other side), each in row order, exactly as `recorder/verify.py` feeds the reference
//! books. Replay of an epoch stops at its first failing message (a mismatch or a message the
//! book refuses): the rest of the epoch cannot be trusted. After each verified message `k`
//! (counted from 1), the epoch's checkpoint for `k`, if any, is compared with the book.
//!
//! A group is *delegated* (not replayed, reported so) when it holds a value that does not fit
//! an `i64` (a null price or qty: the archive then keeps the exact text in its `overflow`
//! column), when its scales are outside `0..=18` or its depth is below 1: the caller replays
//! those with the reference model.

use std::collections::HashMap;

use crate::error::BookError;
use crate::l2::L2Book;
use crate::l3::{L3Book, L3Entry, OrderState};

/// Largest scale a group may have to be replayed here.
const MAX_SCALE: i64 = 18;
/// Depth of an epoch without checkpoints.
pub const DEFAULT_DEPTH: i64 = 10;

/// The columns of one channel's rows, in archive order.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub symbol: Vec<i32>,
    pub epoch: Vec<i64>,
    pub side: Vec<i8>,
    pub event: Vec<i8>,
    pub price: Vec<i64>,
    pub qty: Vec<i64>,
    /// 1 when both price and qty are present (not null).
    pub units_valid: Vec<u8>,
    pub price_scale: Vec<i8>,
    pub qty_scale: Vec<i8>,
    pub checksum: Vec<u32>,
    /// 1 on the rows that carry a checksum (the last row of each message).
    pub checksum_valid: Vec<u8>,
    pub recv_ns: Vec<i64>,
    /// level3 only: order handles, timestamps and their validity.
    pub l3: Option<L3Columns>,
}

/// The level3-only columns.
#[derive(Debug, Clone, Default)]
pub struct L3Columns {
    /// Order handle per row, in `0..n_orders` (dictionary codes of the order ids).
    pub order: Vec<i64>,
    pub ts_ns: Vec<i64>,
    pub ts_valid: Vec<u8>,
    pub n_orders: u32,
}

/// The book a checkpoint holds, in units.
#[derive(Debug, Clone)]
pub enum CheckpointBook {
    L2 {
        bids: Vec<(i64, i64)>,
        asks: Vec<(i64, i64)>,
    },
    L3 {
        bids: Vec<OrderState>,
        asks: Vec<OrderState>,
    },
}

/// One checkpoint of an epoch, prepared by the caller.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Compared after this many messages of the epoch.
    pub message: i64,
    /// The checksum stored with the checkpoint, if any.
    pub checksum: Option<u32>,
    /// False when the checkpoint cannot equal any book of this epoch (other kind, other
    /// symbol, text not in canonical form at its precision, unknown order id...).
    pub comparable: bool,
    pub depth: i64,
    pub price_scale: i64,
    pub qty_scale: i64,
    pub book: CheckpointBook,
}

/// The depth and checkpoints of one epoch (epochs without a spec have depth 10 and none).
#[derive(Debug, Clone)]
pub struct EpochSpec {
    pub symbol: i32,
    pub epoch: i64,
    pub depth: i64,
    /// Indices into the checkpoint list.
    pub checkpoints: Vec<usize>,
}

/// Result of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Replayed = 0,
    Delegated = 1,
}

/// Per-message verdicts.
pub const MATCHED: u8 = 0;
pub const MISMATCH: u8 = 1;
pub const REFUSED: u8 = 2;

/// Per-checkpoint results.
pub const CP_NOT_REACHED: u8 = 0;
pub const CP_OK: u8 = 1;
pub const CP_FAILED: u8 = 2;

/// Everything the replay found, as columns.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Row indices grouped (group g is `perm[group_row_start[g]..group_row_start[g + 1]]`).
    pub perm: Vec<i64>,
    pub group_row_start: Vec<i64>,
    pub group_symbol: Vec<i32>,
    pub group_epoch: Vec<i64>,
    pub group_status: Vec<u8>,
    /// Messages in the epoch (rows carrying a checksum), replayed or not.
    pub group_messages: Vec<i64>,
    /// 1 when rows follow the epoch's last checksum (an unverifiable trailing message).
    pub group_unverifiable: Vec<u8>,
    /// Replayed messages of group g are `msg_*[group_msg_start[g]..group_msg_start[g + 1]]`.
    pub group_msg_start: Vec<i64>,
    pub msg_verdict: Vec<u8>,
    pub msg_expected: Vec<u32>,
    pub msg_computed: Vec<u32>,
    pub msg_recv: Vec<i64>,
    /// Refused messages: message index and why.
    pub errors: Vec<(i64, BookError)>,
    /// One per checkpoint: not reached, matched or failed.
    pub checkpoint_result: Vec<u8>,
}

/// Why the inputs cannot be replayed at all (a caller bug, never data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

fn check_len(name: &str, len: usize, n: usize) -> Result<(), InputError> {
    if len == n {
        Ok(())
    } else {
        Err(InputError(format!(
            "column {name} has {len} rows, expected {n}"
        )))
    }
}

impl Rows {
    fn validate(&self) -> Result<(), InputError> {
        let n = self.symbol.len();
        check_len("epoch", self.epoch.len(), n)?;
        check_len("side", self.side.len(), n)?;
        check_len("event", self.event.len(), n)?;
        check_len("price", self.price.len(), n)?;
        check_len("qty", self.qty.len(), n)?;
        check_len("units_valid", self.units_valid.len(), n)?;
        check_len("price_scale", self.price_scale.len(), n)?;
        check_len("qty_scale", self.qty_scale.len(), n)?;
        check_len("checksum", self.checksum.len(), n)?;
        check_len("checksum_valid", self.checksum_valid.len(), n)?;
        check_len("recv_ns", self.recv_ns.len(), n)?;
        if let Some(l3) = &self.l3 {
            check_len("order", l3.order.len(), n)?;
            check_len("ts_ns", l3.ts_ns.len(), n)?;
            check_len("ts_valid", l3.ts_valid.len(), n)?;
            // a dictionary of the rows' ids has at most one entry per row: this bounds the
            // book's handle index by the input's size
            if l3.n_orders as usize > n.max(1) {
                return Err(InputError(format!(
                    "n_orders {} exceeds the {n} rows",
                    l3.n_orders
                )));
            }
            if let Some(bad) = l3
                .order
                .iter()
                .find(|&&o| o < 0 || o >= i64::from(l3.n_orders))
            {
                return Err(InputError(format!(
                    "order handle {bad} outside 0..{}",
                    l3.n_orders
                )));
            }
        }
        Ok(())
    }
}

/// Group row indices by `(symbol, epoch)` in order of first appearance (stable inside).
fn group_rows(symbol: &[i32], epoch: &[i64]) -> (Vec<(i32, i64)>, Vec<i64>, Vec<i64>) {
    let mut ids: HashMap<(i32, i64), usize> = HashMap::new();
    let mut keys: Vec<(i32, i64)> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    let mut group_of: Vec<usize> = Vec::with_capacity(symbol.len());
    // Symbols interleave but each one's epoch changes rarely: the last (epoch, group) seen
    // per symbol code (dictionary codes are small and dense) skips the hash lookup.
    let top = symbol.iter().copied().max().unwrap_or(-1);
    let dense = usize::try_from(top.saturating_add(1))
        .unwrap_or(0)
        .min(1 << 16);
    let mut last: Vec<Option<(i64, usize)>> = vec![None; dense];
    for (&s, &e) in symbol.iter().zip(epoch) {
        let slot = usize::try_from(s).ok().and_then(|i| last.get_mut(i));
        let g = match slot {
            Some(Some((epoch, g))) if *epoch == e => *g,
            slot => {
                let g = *ids.entry((s, e)).or_insert_with(|| {
                    keys.push((s, e));
                    counts.push(0);
                    keys.len() - 1
                });
                if let Some(slot) = slot {
                    *slot = Some((e, g));
                }
                g
            }
        };
        if let Some(c) = counts.get_mut(g) {
            *c += 1;
        }
        group_of.push(g);
    }
    let mut start = Vec::with_capacity(keys.len() + 1);
    let mut total = 0i64;
    start.push(0);
    for c in &counts {
        total += c;
        start.push(total);
    }
    let mut next: Vec<i64> = start.clone();
    let mut perm = vec![0i64; symbol.len()];
    for (row, &g) in group_of.iter().enumerate() {
        if let Some(pos) = next.get_mut(g) {
            if let Some(slot) = perm.get_mut(*pos as usize) {
                *slot = row as i64;
            }
            *pos += 1;
        }
    }
    (keys, perm, start)
}

/// Replay every group; `specs` give depths and checkpoints, `checkpoints` the compared books.
pub fn replay(
    rows: &Rows,
    specs: &[EpochSpec],
    checkpoints: &[Checkpoint],
) -> Result<Replay, InputError> {
    rows.validate()?;
    let mut spec_of: HashMap<(i32, i64), &EpochSpec> = HashMap::new();
    for spec in specs {
        if let Some(&bad) = spec.checkpoints.iter().find(|&&c| c >= checkpoints.len()) {
            return Err(InputError(format!("checkpoint index {bad} out of range")));
        }
        spec_of.insert((spec.symbol, spec.epoch), spec);
    }
    let (keys, perm, row_start) = group_rows(&rows.symbol, &rows.epoch);
    let mut out = Replay {
        checkpoint_result: vec![CP_NOT_REACHED; checkpoints.len()],
        group_msg_start: vec![0],
        ..Replay::default()
    };
    let mut l2 = L2Book::new(10);
    let mut l3 = rows.l3.as_ref().map(|c| L3Book::new(10, c.n_orders));
    for (g, &(symbol, epoch)) in keys.iter().enumerate() {
        let (a, b) = (row_start[g] as usize, row_start[g + 1] as usize);
        let group: Vec<usize> = perm[a..b].iter().map(|&r| r as usize).collect();
        let spec = spec_of.get(&(symbol, epoch)).copied();
        let status = replay_group(
            rows,
            &group,
            spec,
            checkpoints,
            &mut l2,
            l3.as_mut(),
            &mut out,
        );
        out.group_symbol.push(symbol);
        out.group_epoch.push(epoch);
        out.group_status.push(status as u8);
        let messages = group
            .iter()
            .filter(|&&r| rows.checksum_valid[r] != 0)
            .count();
        out.group_messages.push(messages as i64);
        let trailing = group.last().is_some_and(|&r| rows.checksum_valid[r] == 0);
        out.group_unverifiable.push(u8::from(trailing));
        out.group_msg_start.push(out.msg_verdict.len() as i64);
    }
    out.perm = perm;
    out.group_row_start = row_start;
    Ok(out)
}

fn replay_group(
    rows: &Rows,
    group: &[usize],
    spec: Option<&EpochSpec>,
    checkpoints: &[Checkpoint],
    l2: &mut L2Book,
    l3: Option<&mut L3Book>,
    out: &mut Replay,
) -> Status {
    let Some(&first) = group.first() else {
        return Status::Delegated;
    };
    let depth = spec.map_or(DEFAULT_DEPTH, |s| s.depth);
    let (pp, qp) = (
        i64::from(rows.price_scale[first]),
        i64::from(rows.qty_scale[first]),
    );
    if depth < 1
        || !(0..=MAX_SCALE).contains(&pp)
        || !(0..=MAX_SCALE).contains(&qp)
        || group.iter().any(|&r| rows.units_valid[r] == 0)
    {
        return Status::Delegated;
    }
    let depth_usize = usize::try_from(depth).unwrap_or(usize::MAX);
    // checkpoints by message number; the last one given for a number wins
    let mut by_message: Vec<(i64, usize)> = spec
        .map(|s| {
            s.checkpoints
                .iter()
                .map(|&c| (checkpoints[c].message, c))
                .collect()
        })
        .unwrap_or_default();
    by_message.reverse();
    by_message.sort_by_key(|&(m, _)| m); // stable: for equal numbers the last given comes first
    by_message.dedup_by_key(|&mut (m, _)| m);
    match l3 {
        None => {
            l2.reset(depth_usize);
            let mut target = L2Target {
                rows,
                book: l2,
                depth,
                pp,
                qp,
            };
            replay_messages(rows, group, &by_message, checkpoints, out, &mut target);
        }
        Some(book) => {
            let Some(cols) = rows.l3.as_ref() else {
                return Status::Delegated;
            };
            book.reset(depth_usize);
            let mut target = L3Target {
                rows,
                cols,
                book,
                depth,
                pp,
                qp,
            };
            replay_messages(rows, group, &by_message, checkpoints, out, &mut target);
        }
    }
    Status::Replayed
}

/// A book being replayed: applies one message's rows, compares a checkpoint.
trait Target {
    fn apply(&mut self, snapshot: bool, msg: &[usize]) -> Result<u32, BookError>;
    fn same(&self, cp: &Checkpoint) -> bool;
}

struct L2Target<'a> {
    rows: &'a Rows,
    book: &'a mut L2Book,
    depth: i64,
    pp: i64,
    qp: i64,
}

impl Target for L2Target<'_> {
    fn apply(&mut self, snapshot: bool, msg: &[usize]) -> Result<u32, BookError> {
        let rows = self.rows;
        let level = |&r: &usize| (rows.price[r], rows.qty[r]);
        let bids = msg.iter().filter(|&&r| rows.side[r] == 0).map(level);
        let asks = msg.iter().filter(|&&r| rows.side[r] != 0).map(level);
        self.book.apply(snapshot, bids, asks).map(|o| o.computed)
    }

    fn same(&self, cp: &Checkpoint) -> bool {
        match &cp.book {
            CheckpointBook::L2 { bids, asks } => {
                cp.depth == self.depth
                    && cp.price_scale == self.pp
                    && cp.qty_scale == self.qp
                    && self.book.has_levels(bids, asks)
            }
            CheckpointBook::L3 { .. } => false,
        }
    }
}

struct L3Target<'a> {
    rows: &'a Rows,
    cols: &'a L3Columns,
    book: &'a mut L3Book,
    depth: i64,
    pp: i64,
    qp: i64,
}

impl Target for L3Target<'_> {
    fn apply(&mut self, snapshot: bool, msg: &[usize]) -> Result<u32, BookError> {
        let (rows, cols) = (self.rows, self.cols);
        let entry = |&r: &usize| L3Entry {
            event: i64::from(rows.event[r]),
            // validated: 0 <= order < n_orders, and n_orders is a u32
            order: u32::try_from(cols.order[r]).unwrap_or(u32::MAX),
            price: rows.price[r],
            qty: rows.qty[r],
            ts: (cols.ts_valid[r] != 0).then_some(cols.ts_ns[r]),
        };
        let bids = msg.iter().filter(|&&r| rows.side[r] == 0).map(entry);
        let asks = msg.iter().filter(|&&r| rows.side[r] != 0).map(entry);
        self.book.apply(snapshot, bids, asks).map(|o| o.computed)
    }

    fn same(&self, cp: &Checkpoint) -> bool {
        match &cp.book {
            CheckpointBook::L3 { bids, asks } => {
                cp.depth == self.depth
                    && cp.price_scale == self.pp
                    && cp.qty_scale == self.qp
                    && self.book.has_orders(bids, asks)
            }
            CheckpointBook::L2 { .. } => false,
        }
    }
}

fn replay_messages(
    rows: &Rows,
    group: &[usize],
    by_message: &[(i64, usize)],
    checkpoints: &[Checkpoint],
    out: &mut Replay,
    target: &mut dyn Target,
) {
    let mut start = 0usize;
    let mut k: i64 = 0;
    for (i, &row) in group.iter().enumerate() {
        if rows.checksum_valid[row] == 0 {
            continue;
        }
        let msg = &group[start..=i];
        start = i + 1;
        let expected = rows.checksum[row];
        let snapshot = rows.event[row] == 0;
        let index = out.msg_verdict.len() as i64;
        out.msg_expected.push(expected);
        out.msg_recv.push(rows.recv_ns[row]);
        k += 1;
        match target.apply(snapshot, msg) {
            Ok(computed) => {
                out.msg_computed.push(computed);
                if computed != expected {
                    out.msg_verdict.push(MISMATCH);
                    return;
                }
                out.msg_verdict.push(MATCHED);
            }
            Err(err) => {
                out.msg_computed.push(0);
                out.msg_verdict.push(REFUSED);
                out.errors.push((index, err));
                return;
            }
        }
        if let Ok(pos) = by_message.binary_search_by_key(&k, |&(m, _)| m) {
            let c = by_message[pos].1;
            let cp = &checkpoints[c];
            let ok = cp.comparable && cp.checksum.is_none_or(|c| c == expected) && target.same(cp);
            out.checkpoint_result[c] = if ok { CP_OK } else { CP_FAILED };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny L2 channel: rows (symbol, epoch, side, event, price, qty, checksum?).
    /// (symbol, epoch, side, event, price, qty, checksum)
    type Row = (i32, i64, i8, i8, i64, i64, Option<u32>);

    fn l2_rows(raw: &[Row]) -> Rows {
        let mut rows = Rows::default();
        for (i, &(s, e, side, ev, p, q, ck)) in raw.iter().enumerate() {
            rows.symbol.push(s);
            rows.epoch.push(e);
            rows.side.push(side);
            rows.event.push(ev);
            rows.price.push(p);
            rows.qty.push(q);
            rows.units_valid.push(1);
            rows.price_scale.push(1);
            rows.qty_scale.push(1);
            rows.checksum.push(ck.unwrap_or(0));
            rows.checksum_valid.push(u8::from(ck.is_some()));
            rows.recv_ns.push(1000 + i as i64);
        }
        rows
    }

    fn crc_of(bids: &[(i64, i64)], asks: &[(i64, i64)]) -> u32 {
        let mut book = L2Book::new(10);
        book.apply(true, bids.to_vec(), asks.to_vec())
            .unwrap()
            .computed
    }

    #[test]
    fn groups_keep_first_appearance_order() {
        let (keys, perm, start) = group_rows(&[2, 1, 2, 1, 3], &[5, 5, 5, 6, 5]);
        assert_eq!(keys, vec![(2, 5), (1, 5), (1, 6), (3, 5)]);
        assert_eq!(perm, vec![0, 2, 1, 3, 4]);
        assert_eq!(start, vec![0, 2, 3, 4, 5]);
    }

    #[test]
    fn verdicts_stop_at_the_first_failure() {
        let snap = crc_of(&[(10, 1)], &[(11, 1)]);
        let upd = crc_of(&[(10, 2)], &[(11, 1)]);
        let rows = l2_rows(&[
            (0, 1, 0, 0, 10, 1, None),
            (0, 1, 1, 0, 11, 1, Some(snap)),
            (0, 1, 0, 1, 10, 2, Some(upd)),
            (0, 1, 0, 1, 10, 3, Some(12345)), // mismatch
            (0, 1, 0, 1, 10, 4, Some(1)),     // never replayed
            (1, 2, 0, 1, 10, 4, Some(1)),     // update without snapshot
            (1, 3, 0, 0, 10, 4, None),        // trailing rows only
        ]);
        let r = replay(&rows, &[], &[]).unwrap();
        assert_eq!(r.group_status, vec![0, 0, 0]);
        assert_eq!(r.group_messages, vec![4, 1, 0]);
        assert_eq!(r.group_unverifiable, vec![0, 0, 1]);
        assert_eq!(r.group_msg_start, vec![0, 3, 4, 4]);
        assert_eq!(r.msg_verdict, vec![MATCHED, MATCHED, MISMATCH, REFUSED]);
        assert_eq!(r.msg_expected, vec![snap, upd, 12345, 1]);
        assert_eq!(r.msg_recv, vec![1001, 1002, 1003, 1005]);
        assert_eq!(r.errors, vec![(3, BookError::NoSnapshot)]);
    }

    #[test]
    fn bids_are_applied_before_asks() {
        // the message lists an ask first; a crossing bid applied first must not matter for
        // L2 state, but the order of rows inside a side does: 10 set then removed
        let want = crc_of(&[], &[(11, 1)]);
        let rows = l2_rows(&[
            (0, 1, 1, 0, 11, 1, None),
            (0, 1, 0, 0, 10, 1, None),
            (0, 1, 0, 0, 10, 0, Some(want)),
        ]);
        let r = replay(&rows, &[], &[]).unwrap();
        assert_eq!(r.msg_verdict, vec![MATCHED]);
    }

    #[test]
    fn delegates_overflow_and_bad_scales() {
        let mut rows = l2_rows(&[(0, 1, 0, 0, 10, 1, Some(0)), (1, 1, 0, 0, 10, 1, Some(0))]);
        rows.units_valid[0] = 0;
        rows.qty_scale[1] = 19;
        let r = replay(&rows, &[], &[]).unwrap();
        assert_eq!(r.group_status, vec![1, 1]);
        assert!(r.msg_verdict.is_empty());
    }

    #[test]
    fn checkpoints_are_compared_after_their_message() {
        let snap = crc_of(&[(10, 1)], &[(11, 1)]);
        let upd = crc_of(&[(10, 2)], &[(11, 1)]);
        let rows = l2_rows(&[
            (0, 1, 0, 0, 10, 1, None),
            (0, 1, 1, 0, 11, 1, Some(snap)),
            (0, 1, 0, 1, 10, 2, Some(upd)),
        ]);
        let cp = |message, bids: Vec<(i64, i64)>, checksum| Checkpoint {
            message,
            checksum,
            comparable: true,
            depth: 5,
            price_scale: 1,
            qty_scale: 1,
            book: CheckpointBook::L2 {
                bids,
                asks: vec![(11, 1)],
            },
        };
        let cps = vec![
            cp(1, vec![(10, 1)], Some(snap)), // ok
            cp(2, vec![(10, 1)], None),       // stale book: failed
            cp(2, vec![(10, 2)], Some(upd)),  // same message, given later: wins
            cp(9, vec![(10, 2)], None),       // never reached
            cp(1, vec![(10, 1)], Some(upd)),  // other epoch's spec
        ];
        let specs = vec![
            EpochSpec {
                symbol: 0,
                epoch: 1,
                depth: 5,
                checkpoints: vec![0, 1, 2, 3],
            },
            EpochSpec {
                symbol: 7,
                epoch: 1,
                depth: 5,
                checkpoints: vec![4],
            },
        ];
        let r = replay(&rows, &specs, &cps).unwrap();
        assert_eq!(r.msg_verdict, vec![MATCHED, MATCHED]);
        assert_eq!(
            r.checkpoint_result,
            vec![CP_OK, CP_NOT_REACHED, CP_OK, CP_NOT_REACHED, 0]
        );
        // a checkpoint with the wrong depth or scale never matches
        let mut bad = cps.clone();
        bad[0].depth = 6;
        bad[2].qty_scale = 2;
        let r = replay(&rows, &specs, &bad).unwrap();
        assert_eq!(r.checkpoint_result[0], CP_FAILED);
        assert_eq!(r.checkpoint_result[2], CP_FAILED);
    }

    #[test]
    fn level3_groups() {
        let mut book = L3Book::new(10, 4);
        let e = |event, order, price, qty| L3Entry {
            event,
            order,
            price,
            qty,
            ts: None,
        };
        let snap = book
            .apply(true, vec![e(0, 0, 10, 1), e(0, 1, 10, 2)], vec![])
            .unwrap();
        let upd = book.apply(false, vec![e(3, 0, 10, 1)], vec![]).unwrap();
        let mut rows = l2_rows(&[
            (0, 1, 0, 0, 10, 1, None),
            (0, 1, 0, 0, 10, 2, Some(snap.computed)),
            (0, 1, 0, 3, 10, 1, Some(upd.computed)),
            (0, 1, 0, 9, 10, 1, Some(0)),
        ]);
        rows.l3 = Some(L3Columns {
            order: vec![0, 1, 0, 2],
            ts_ns: vec![5, 6, 7, 8],
            ts_valid: vec![1, 1, 0, 1],
            n_orders: 4,
        });
        let r = replay(&rows, &[], &[]).unwrap();
        assert_eq!(r.msg_verdict, vec![MATCHED, MATCHED, REFUSED]);
        assert_eq!(r.errors, vec![(2, BookError::UnknownEvent(9))]);
    }

    #[test]
    fn rejects_inconsistent_inputs() {
        let mut rows = l2_rows(&[(0, 1, 0, 0, 10, 1, Some(0))]);
        rows.qty.clear();
        assert!(replay(&rows, &[], &[]).is_err());
        let mut rows = l2_rows(&[(0, 1, 0, 0, 10, 1, Some(0))]);
        rows.l3 = Some(L3Columns {
            order: vec![4],
            ts_ns: vec![0],
            ts_valid: vec![0],
            n_orders: 4,
        });
        assert!(replay(&rows, &[], &[]).is_err());
        let mut rows = l2_rows(&[(0, 1, 0, 0, 10, 1, Some(0))]);
        rows.l3 = Some(L3Columns {
            order: vec![0],
            ts_ns: vec![0],
            ts_valid: vec![0],
            n_orders: u32::MAX,
        });
        assert!(replay(&rows, &[], &[]).is_err());
        let rows = l2_rows(&[(0, 1, 0, 0, 10, 1, Some(0))]);
        let spec = EpochSpec {
            symbol: 0,
            epoch: 1,
            depth: 10,
            checkpoints: vec![0],
        };
        assert!(replay(&rows, &[spec], &[]).is_err());
    }
}
