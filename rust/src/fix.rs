//! FIX 4.4 tag=value messages as Kraken's market-data gateway sends them: framing from a byte
//! stream, BodyLength and CheckSum validation, the header, the 268 NoMDEntries repeating group
//! with exact prices and sizes, and an encoder for what we send.
//!
//! [`Framer::feed`] takes whatever bytes the socket produced (any split, many messages at
//! once) and returns one [`Frame`] per complete message or per rejected run of bytes. A
//! frame is either a decoded [`Message`] or a [`Reject`] with a typed [`RejectReason`]
//! and the raw bytes, so a recorder can journal exactly what arrived. No input panics. The
//! limits ([`MAX_MESSAGE_LEN`], [`MAX_GROUP_ENTRIES`], [`MAX_INT_DIGITS`]) are checked
//! before anything is allocated for the claimed size.
//!
//! Numbers never pass through a float. Prices and sizes are [`Decimal`]s, i.e. mantissa and
//! scale, as written on the wire. SendingTime (52), OrigSendingTime (122) and Kraken's
//! nanosecond timestamps (5060, 5273) become int64 nanoseconds since the Unix epoch, UTC.
//! MDEntryTime (273) is kept as text: it is a time of day without a date (docs/fix.md).

use std::fmt;

use crate::decimal::{self, Decimal, NumberError};

/// Field delimiter (SOH).
pub const SOH: u8 = 0x01;
/// Every message starts with these bytes.
pub const BEGIN: &[u8] = b"8=FIX.4.4\x01";
/// Largest BodyLength accepted (bytes). Larger claims are rejected before buffering.
pub const MAX_MESSAGE_LEN: usize = 1_000_000;
/// Largest NoMDEntries (268) accepted.
pub const MAX_GROUP_ENTRIES: usize = 5_000;
/// Most digits in an integer field (sequence numbers, counts, lengths).
pub const MAX_INT_DIGITS: usize = 10;

/// MsgTypes this decoder knows (admin and market data).
pub const KNOWN_MSG_TYPES: [&str; 12] =
    ["0", "1", "2", "3", "4", "5", "A", "V", "W", "X", "Y", "j"];

/// Tags that may appear inside one 268 entry.
const ENTRY_TAGS: [u32; 18] = [
    279, 269, 278, 270, 271, 272, 273, 5060, 5273, 40, 2446, 290, 346, 55, 336, 326, 277, 1023,
];

/// Why bytes were not accepted as a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// Bytes before a `8=FIX.4.4` start (or a different BeginString).
    Garbage,
    /// BodyLength (9) is missing, malformed, too large, or disagrees with where `10=` is.
    BodyLength {
        declared: Option<usize>,
        actual: Option<usize>,
    },
    /// CheckSum (10) malformed or not the sum of the bytes before it.
    Checksum {
        declared: Option<u32>,
        computed: u32,
    },
    /// More than [`MAX_MESSAGE_LEN`] bytes without a trailer.
    TooLong(usize),
    /// A field is not `tag=value` (no `=`, a tag that is not digits, an empty value).
    Malformed(String),
    /// MsgType (35) not among [`KNOWN_MSG_TYPES`].
    UnknownMsgType(String),
    /// A required field is absent.
    MissingField(u32),
    /// A field's value is invalid (not an integer, not an allowed value, a bad time).
    BadField { tag: u32, why: String },
    /// A header field or a single-valued body field appears twice.
    DuplicateField(u32),
    /// A price or size is not an exact supported decimal.
    BadNumber { tag: u32, err: NumberError },
    /// NoMDEntries (268) larger than [`MAX_GROUP_ENTRIES`].
    GroupTooLarge(u64),
    /// NoMDEntries disagrees with the entries present, or an entry is out of shape.
    GroupMismatch(String),
}

impl RejectReason {
    /// A short stable code, e.g. `checksum`, for rows and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Garbage => "garbage",
            RejectReason::BodyLength { .. } => "body_length",
            RejectReason::Checksum { .. } => "checksum",
            RejectReason::TooLong(_) => "too_long",
            RejectReason::Malformed(_) => "malformed",
            RejectReason::UnknownMsgType(_) => "unknown_msg_type",
            RejectReason::MissingField(_) => "missing_field",
            RejectReason::BadField { .. } => "bad_field",
            RejectReason::DuplicateField(_) => "duplicate_field",
            RejectReason::BadNumber { .. } => "bad_number",
            RejectReason::GroupTooLarge(_) => "group_too_large",
            RejectReason::GroupMismatch(_) => "group_mismatch",
        }
    }

    /// The tag the reject is about, if any (FIX RefTagID, 371).
    pub fn tag(&self) -> Option<u32> {
        match self {
            RejectReason::BodyLength { .. } => Some(9),
            RejectReason::Checksum { .. } => Some(10),
            RejectReason::UnknownMsgType(_) => Some(35),
            RejectReason::MissingField(t) | RejectReason::DuplicateField(t) => Some(*t),
            RejectReason::BadField { tag, .. } | RejectReason::BadNumber { tag, .. } => Some(*tag),
            RejectReason::GroupTooLarge(_) => Some(268),
            _ => None,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Garbage => write!(f, "bytes outside a FIX.4.4 message"),
            RejectReason::BodyLength { declared, actual } => match (declared, actual) {
                (Some(d), Some(a)) => write!(f, "BodyLength {d} but the body is {a} bytes"),
                (Some(d), None) => write!(f, "BodyLength {d} is out of range"),
                _ => write!(f, "BodyLength (9) missing or malformed"),
            },
            RejectReason::Checksum { declared, computed } => match declared {
                Some(d) => write!(f, "CheckSum {d:03} but the bytes sum to {computed:03}"),
                None => write!(f, "CheckSum (10) malformed (computed {computed:03})"),
            },
            RejectReason::TooLong(n) => {
                write!(f, "{n} bytes without a trailer (at most {MAX_MESSAGE_LEN})")
            }
            RejectReason::Malformed(why) => write!(f, "malformed field: {why}"),
            RejectReason::UnknownMsgType(t) => write!(f, "unknown MsgType {t:?}"),
            RejectReason::MissingField(t) => write!(f, "required tag {t} missing"),
            RejectReason::BadField { tag, why } => write!(f, "tag {tag}: {why}"),
            RejectReason::DuplicateField(t) => write!(f, "tag {t} appears more than once"),
            RejectReason::BadNumber { tag, err } => write!(f, "tag {tag}: {err}"),
            RejectReason::GroupTooLarge(n) => {
                write!(f, "NoMDEntries {n} (at most {MAX_GROUP_ENTRIES})")
            }
            RejectReason::GroupMismatch(why) => write!(f, "repeating group 268: {why}"),
        }
    }
}

/// Bytes that were not accepted, with what could still be read of the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    /// MsgType, if the framing was sound and 35 was read.
    pub msg_type: Option<String>,
    /// MsgSeqNum, if the framing was sound and 34 was read.
    pub seq_num: Option<u64>,
    /// PossDupFlag=Y was read.
    pub poss_dup: bool,
}

/// One entry of the 268 NoMDEntries group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MdEntry {
    /// MDUpdateAction (279): 0 new, 1 change, 2 delete (X only).
    pub action: Option<u8>,
    /// MDEntryType (269): b'0' bid, b'1' offer, b'2' trade.
    pub entry_type: u8,
    /// MDEntryID (278): the order id in L3.
    pub entry_id: Option<String>,
    /// MDEntryPx (270).
    pub price: Option<Decimal>,
    /// MDEntrySize (271).
    pub size: Option<Decimal>,
    /// MDEntryTime (273), as sent (a time of day).
    pub entry_time: Option<String>,
    /// MDEntryTimestamp (5060), ns.
    pub timestamp_ns: Option<i64>,
    /// MDEntryTimeQueue (5273), ns.
    pub queue_time_ns: Option<i64>,
    /// OrdType (40) of a trade's taker.
    pub ord_type: Option<u8>,
    /// AggressorSide (2446) of a trade: b'1' buy, b'2' sell.
    pub aggressor_side: Option<u8>,
}

/// A decoded, validated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub msg_type: String,
    pub seq_num: u64,
    pub sender: String,
    pub target: String,
    pub sending_time_ns: i64,
    pub poss_dup: bool,
    pub orig_sending_time_ns: Option<i64>,
    /// Every other field outside the 268 group, in wire order (V's groups stay flat here).
    pub fields: Vec<(u32, String)>,
    /// The 268 group of W and X.
    pub entries: Vec<MdEntry>,
    /// ChecksumOrderBook (5041), wherever it stood.
    pub book_checksum: Option<u32>,
}

impl Message {
    /// The first value of `tag` among [`Message::fields`].
    pub fn field(&self, tag: u32) -> Option<&str> {
        self.fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }
}

/// What one stretch of input turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub result: Result<Message, Reject>,
    /// The exact bytes this frame covers.
    pub raw: Vec<u8>,
}

/// Splits a byte stream into FIX messages; keeps an incomplete tail for the next call.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    buf: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    // eight bytes at a time for the first byte (SWAR), then the rest compared at each hit: a
    // slice compare per window would call memcmp at every position
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (&first, rest) = needle.split_first()?;
    let hay = haystack.get(from..)?;
    let matches_at =
        |at: usize| hay.get(at) == Some(&first) && hay.get(at + 1..at + needle.len()) == Some(rest);
    let pattern = LO * u64::from(first);
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0usize;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // every byte equal to `first` is flagged (and maybe a byte above one: checked)
        let mut flagged = x.wrapping_sub(LO) & !x & HI;
        while flagged != 0 {
            let at = base + (flagged.trailing_zeros() / 8) as usize;
            if matches_at(at) {
                return Some(from + at);
            }
            flagged &= flagged - 1;
        }
        base += 8;
    }
    (base..hay.len())
        .find(|&at| matches_at(at))
        .map(|at| from + at)
}

/// Sum of bytes mod 256 (FIX CheckSum).
pub fn checksum(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |acc, &b| (acc + u32::from(b)) % 256)
}

fn parse_uint(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > MAX_INT_DIGITS || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &c| {
        acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

/// How a framing attempt at the start of the buffer ended.
enum Step {
    /// Need more bytes.
    Wait,
    /// Emit a frame covering `consumed` bytes.
    Emit(usize, Result<Message, Reject>),
}

impl Framer {
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Bytes held back as the start of an incomplete message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Append `data` and return every frame it completes, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Frame> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        let mut start = 0usize;
        loop {
            let rest = self.buf.get(start..).unwrap_or(&[]);
            if rest.is_empty() {
                break;
            }
            // resynchronise on the next BeginString
            if !rest.starts_with(BEGIN) {
                let skip = match find(rest, BEGIN, 1) {
                    Some(p) => p,
                    None => {
                        // keep a tail that could be the start of BEGIN
                        let keep = (1..BEGIN.len())
                            .rev()
                            .find(|&k| {
                                k <= rest.len() && BEGIN.starts_with(&rest[rest.len() - k..])
                            })
                            .unwrap_or(0);
                        rest.len() - keep
                    }
                };
                if skip == 0 {
                    break;
                }
                frames.push(Frame {
                    raw: rest[..skip].to_vec(),
                    result: Err(reject(RejectReason::Garbage)),
                });
                start += skip;
                continue;
            }
            match frame_at(rest) {
                Step::Wait => break,
                Step::Emit(consumed, result) => {
                    let consumed = consumed.clamp(1, rest.len());
                    frames.push(Frame {
                        raw: rest[..consumed].to_vec(),
                        result,
                    });
                    start += consumed;
                }
            }
        }
        self.buf.drain(..start.min(self.buf.len()));
        frames
    }
}

fn reject(reason: RejectReason) -> Reject {
    Reject {
        reason,
        msg_type: None,
        seq_num: None,
        poss_dup: false,
    }
}

/// Decode `buf` as one message, without a [`Framer`] (for callers that already hold whole
/// messages, e.g. a batch of journaled ones): `None` when `buf` is only the start of a
/// message, else how many bytes the first message covers and its result. Bytes that do not
/// start with [`BEGIN`] are one [`RejectReason::Garbage`] covering all of `buf`.
pub fn decode_one(buf: &[u8]) -> Option<(usize, Result<Message, Reject>)> {
    if !buf.starts_with(BEGIN) {
        if BEGIN.starts_with(buf) {
            return None;
        }
        return Some((buf.len(), Err(reject(RejectReason::Garbage))));
    }
    match frame_at(buf) {
        Step::Wait => None,
        Step::Emit(consumed, result) => Some((consumed.clamp(1, buf.len()), result)),
    }
}

/// Frame the message that starts at `buf[0]` (which starts with [`BEGIN`]).
fn frame_at(buf: &[u8]) -> Step {
    let after_begin = BEGIN.len();
    let Some(tail) = buf.get(after_begin..) else {
        return Step::Wait;
    };
    // 9=digits SOH
    if tail.len() < 2 {
        return Step::Wait;
    }
    let bad_length = |consumed: usize| {
        Step::Emit(
            consumed,
            Err(reject(RejectReason::BodyLength {
                declared: None,
                actual: None,
            })),
        )
    };
    if !tail.starts_with(b"9=") {
        return bad_length(after_begin);
    }
    let digits_end = match tail.iter().skip(2).position(|&c| c == SOH) {
        Some(p) => p + 2,
        None if tail.len() - 2 > MAX_INT_DIGITS => return bad_length(after_begin),
        None => return Step::Wait,
    };
    let Some(declared) = tail
        .get(2..digits_end)
        .and_then(parse_uint)
        .and_then(|v| usize::try_from(v).ok())
    else {
        return bad_length(after_begin);
    };
    if declared > MAX_MESSAGE_LEN {
        return Step::Emit(
            after_begin,
            Err(reject(RejectReason::BodyLength {
                declared: Some(declared),
                actual: None,
            })),
        );
    }
    let body_start = after_begin + digits_end + 1;
    // the trailer is the first "SOH 10=" after the BodyLength field
    let trailer = match find(buf, b"\x0110=", body_start - 1) {
        Some(p) => p + 1,
        None => {
            if buf.len() - body_start > MAX_MESSAGE_LEN + 8 {
                return Step::Emit(buf.len(), Err(reject(RejectReason::TooLong(buf.len()))));
            }
            return Step::Wait;
        }
    };
    // "10=" + 3 digits + SOH; tolerate waiting for it
    let trailer_end = trailer + 7;
    if buf.len() < trailer_end {
        // a malformed trailer might never complete: give up once a SOH shows it is short
        let seen = buf.get(trailer + 3..).unwrap_or(&[]);
        if !seen.contains(&SOH) {
            return Step::Wait;
        }
    }
    let computed = checksum(buf.get(..trailer).unwrap_or(&[]));
    let actual = trailer - body_start;
    let sum_field = buf.get(trailer + 3..trailer_end);
    let declared_sum = sum_field.and_then(|s| {
        let digits = s.get(..3)?;
        (s.get(3) == Some(&SOH) && digits.iter().all(u8::is_ascii_digit)).then(|| {
            digits
                .iter()
                .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'))
        })
    });
    let Some(declared_sum) = declared_sum else {
        // consume up to the SOH that ends the broken trailer
        let end = find(buf, &[SOH], trailer).map_or(buf.len(), |p| p + 1);
        return Step::Emit(
            end,
            Err(reject(RejectReason::Checksum {
                declared: None,
                computed,
            })),
        );
    };
    if actual != declared {
        return Step::Emit(
            trailer_end,
            Err(reject(RejectReason::BodyLength {
                declared: Some(declared),
                actual: Some(actual),
            })),
        );
    }
    if declared_sum != computed {
        return Step::Emit(
            trailer_end,
            Err(reject(RejectReason::Checksum {
                declared: Some(declared_sum),
                computed,
            })),
        );
    }
    let body = buf.get(body_start..trailer - 1).unwrap_or(&[]);
    Step::Emit(trailer_end, decode_body(body))
}

/// Split `tag=value|tag=value` (no trailing SOH) into fields.
fn split_fields(body: &[u8]) -> Result<Vec<(u32, &[u8])>, RejectReason> {
    let mut out = Vec::new();
    for field in body.split(|&c| c == SOH) {
        let Some(eq) = field.iter().position(|&c| c == b'=') else {
            return Err(RejectReason::Malformed(format!(
                "no '=' in {:?}",
                String::from_utf8_lossy(field.get(..field.len().min(32)).unwrap_or(&[]))
            )));
        };
        let (tag, value) = (&field[..eq], &field[eq + 1..]);
        let tag = match parse_uint(tag).and_then(|t| u32::try_from(t).ok()) {
            Some(t) if t > 0 && tag.first() != Some(&b'0') => t,
            _ => {
                return Err(RejectReason::Malformed(format!(
                    "tag {:?} is not a positive integer",
                    String::from_utf8_lossy(tag.get(..tag.len().min(16)).unwrap_or(&[]))
                )));
            }
        };
        if value.is_empty() {
            return Err(RejectReason::BadField {
                tag,
                why: "empty value".to_owned(),
            });
        }
        out.push((tag, value));
    }
    Ok(out)
}

fn text(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    }
}

fn bad(tag: u32, why: impl Into<String>) -> RejectReason {
    RejectReason::BadField {
        tag,
        why: why.into(),
    }
}

fn uint_field(tag: u32, value: &[u8]) -> Result<u64, RejectReason> {
    parse_uint(value).ok_or_else(|| bad(tag, format!("{:?} is not an integer", text(value))))
}

fn flag_field(tag: u32, value: &[u8]) -> Result<bool, RejectReason> {
    match value {
        b"Y" => Ok(true),
        b"N" => Ok(false),
        _ => Err(bad(tag, format!("{:?} is not Y or N", text(value)))),
    }
}

fn one_of(tag: u32, value: &[u8], allowed: &[u8]) -> Result<u8, RejectReason> {
    match value {
        [c] if allowed.contains(c) => Ok(*c),
        _ => Err(bad(
            tag,
            format!("{:?} is not an allowed value", text(value)),
        )),
    }
}

fn number(tag: u32, value: &[u8]) -> Result<Decimal, RejectReason> {
    decimal::parse_decimal(value).map_err(|err| RejectReason::BadNumber { tag, err })
}

/// Required body fields per MsgType (beyond the header).
fn required(msg_type: &str) -> &'static [u32] {
    match msg_type {
        "A" => &[98, 108],
        "1" => &[112],
        "2" => &[7, 16],
        "3" => &[45],
        "4" => &[36],
        "V" => &[262, 263, 264],
        "W" => &[262, 55, 268],
        "X" => &[262, 268],
        "Y" => &[262, 281],
        "j" => &[45, 380],
        _ => &[],
    }
}

/// Integer-valued body fields checked as such.
const INT_TAGS: [u32; 11] = [7, 16, 36, 45, 98, 108, 263, 264, 265, 267, 146];

fn decode_body(body: &[u8]) -> Result<Message, Reject> {
    let fields = split_fields(body).map_err(reject)?;
    let mut partial = Reject {
        reason: RejectReason::MissingField(35),
        msg_type: None,
        seq_num: None,
        poss_dup: false,
    };
    let Some(&(35, msg_type)) = fields.first() else {
        return Err(partial);
    };
    let msg_type = text(msg_type);
    partial.msg_type = Some(msg_type.clone());
    // header first, so that a reject can still name the sequence number
    let (mut seq, mut sender, mut target, mut sent, mut poss_dup, mut orig) =
        (None, None, None, None, None, None);
    let mut header_error = None;
    for &(tag, value) in fields.iter().skip(1) {
        let slot_taken = match tag {
            34 => seq.replace(value).is_some(),
            49 => sender.replace(value).is_some(),
            56 => target.replace(value).is_some(),
            52 => sent.replace(value).is_some(),
            43 => poss_dup.replace(value).is_some(),
            122 => orig.replace(value).is_some(),
            35 => true,
            _ => false,
        };
        if slot_taken && header_error.is_none() {
            header_error = Some(RejectReason::DuplicateField(tag));
        }
    }
    partial.seq_num = seq.and_then(parse_uint);
    partial.poss_dup = poss_dup == Some(b"Y".as_slice());
    let fail = |partial: &Reject, reason: RejectReason| Reject {
        reason,
        ..partial.clone()
    };
    if let Some(reason) = header_error {
        return Err(fail(&partial, reason));
    }
    let header = (|| {
        let seq_num = uint_field(34, seq.ok_or(RejectReason::MissingField(34))?)?;
        let sender = text(sender.ok_or(RejectReason::MissingField(49))?);
        let target = text(target.ok_or(RejectReason::MissingField(56))?);
        let sending_time_ns = fix_time_ns(sent.ok_or(RejectReason::MissingField(52))?)
            .ok_or_else(|| bad(52, "not YYYYMMDD-HH:MM:SS[.fff]"))?;
        let poss_dup = poss_dup
            .map(|v| flag_field(43, v))
            .transpose()?
            .unwrap_or(false);
        let orig_sending_time_ns = orig
            .map(|v| fix_time_ns(v).ok_or_else(|| bad(122, "not YYYYMMDD-HH:MM:SS[.fff]")))
            .transpose()?;
        Ok((
            seq_num,
            sender,
            target,
            sending_time_ns,
            poss_dup,
            orig_sending_time_ns,
        ))
    })();
    let (seq_num, sender, target, sending_time_ns, poss_dup, orig_sending_time_ns) =
        header.map_err(|reason| fail(&partial, reason))?;
    if !KNOWN_MSG_TYPES.contains(&msg_type.as_str()) {
        return Err(fail(&partial, RejectReason::UnknownMsgType(msg_type)));
    }
    let body_fields = fields
        .iter()
        .skip(1)
        .filter(|(t, _)| !matches!(t, 34 | 49 | 56 | 52 | 43 | 122));
    decode_application(&msg_type, body_fields)
        .map(|(fields, entries, book_checksum)| Message {
            msg_type: msg_type.clone(),
            seq_num,
            sender,
            target,
            sending_time_ns,
            poss_dup,
            orig_sending_time_ns,
            fields,
            entries,
            book_checksum,
        })
        .map_err(|reason| fail(&partial, reason))
}

type Body = (Vec<(u32, String)>, Vec<MdEntry>, Option<u32>);

fn decode_application<'a>(
    msg_type: &str,
    fields: impl Iterator<Item = &'a (u32, &'a [u8])>,
) -> Result<Body, RejectReason> {
    let market_data = matches!(msg_type, "W" | "X");
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut entries: Vec<MdEntry> = Vec::new();
    let mut book_checksum = None;
    let mut fields = fields.peekable();
    let mut declared_entries: Option<usize> = None;
    while let Some(&(tag, value)) = fields.next() {
        if INT_TAGS.contains(&tag) {
            uint_field(tag, value)?;
        }
        if tag == 5041 {
            let sum = uint_field(5041, value)?;
            book_checksum = Some(u32::try_from(sum).map_err(|_| bad(5041, "above 2^32-1"))?);
            continue;
        }
        if market_data && tag == 268 {
            if declared_entries.is_some() {
                return Err(RejectReason::DuplicateField(268));
            }
            let n = uint_field(268, value)?;
            if n > MAX_GROUP_ENTRIES as u64 {
                return Err(RejectReason::GroupTooLarge(n));
            }
            let n = usize::try_from(n).map_err(|_| RejectReason::GroupTooLarge(n))?;
            declared_entries = Some(n);
            entries.reserve(n);
            let delimiter = if msg_type == "X" { 279 } else { 269 };
            while let Some(&&(tag, _)) = fields.peek() {
                if tag == 5041 {
                    // ChecksumOrderBook: message-level wherever it stands
                    if let Some(&(_, v)) = fields.next() {
                        let sum = uint_field(5041, v)?;
                        book_checksum =
                            Some(u32::try_from(sum).map_err(|_| bad(5041, "above 2^32-1"))?);
                    }
                    continue;
                }
                if !ENTRY_TAGS.contains(&tag) {
                    break;
                }
                if tag != delimiter {
                    return Err(RejectReason::GroupMismatch(format!(
                        "entry {} starts with tag {tag}, not {delimiter}",
                        entries.len() + 1
                    )));
                }
                if entries.len() == n {
                    return Err(RejectReason::GroupMismatch(format!(
                        "more entries than NoMDEntries {n}"
                    )));
                }
                entries.push(decode_entry(msg_type, &mut fields)?);
            }
            if entries.len() != n {
                return Err(RejectReason::GroupMismatch(format!(
                    "NoMDEntries {n} but {} entries",
                    entries.len()
                )));
            }
            continue;
        }
        if market_data && ENTRY_TAGS.contains(&tag) && tag != 55 {
            return Err(RejectReason::GroupMismatch(format!(
                "entry tag {tag} outside the group"
            )));
        }
        if market_data && out.iter().any(|(t, _)| *t == tag) {
            return Err(RejectReason::DuplicateField(tag));
        }
        out.push((tag, text(value)));
    }
    for &tag in required(msg_type) {
        let present =
            out.iter().any(|(t, _)| *t == tag) || (tag == 268 && declared_entries.is_some());
        if !present {
            return Err(RejectReason::MissingField(tag));
        }
    }
    Ok((out, entries, book_checksum))
}

fn decode_entry<'a, I>(
    msg_type: &str,
    fields: &mut std::iter::Peekable<I>,
) -> Result<MdEntry, RejectReason>
where
    I: Iterator<Item = &'a (u32, &'a [u8])>,
{
    let mut entry = MdEntry::default();
    // each entry tag at most once: no allocation per entry
    let mut seen = [0u32; ENTRY_TAGS.len()];
    let mut n_seen = 0usize;
    let mut first = true;
    while let Some(&&(tag, value)) = fields.peek() {
        if !ENTRY_TAGS.contains(&tag) {
            break;
        }
        if seen.get(..n_seen).unwrap_or(&[]).contains(&tag) {
            if first {
                return Err(RejectReason::GroupMismatch(format!("tag {tag} repeated")));
            }
            // the delimiter again: the next entry starts
            let delimiter = seen[0];
            if tag == delimiter {
                break;
            }
            return Err(RejectReason::GroupMismatch(format!(
                "tag {tag} twice in one entry"
            )));
        }
        first = false;
        if let Some(slot) = seen.get_mut(n_seen) {
            *slot = tag;
            n_seen += 1;
        }
        fields.next();
        match tag {
            279 => entry.action = Some(one_of(279, value, b"012")? - b'0'),
            269 => {
                let allowed: &[u8] = if msg_type == "W" { b"01" } else { b"012" };
                entry.entry_type = one_of(269, value, allowed)?;
            }
            278 => entry.entry_id = Some(text(value)),
            270 => entry.price = Some(number(270, value)?),
            271 => entry.size = Some(number(271, value)?),
            273 => entry.entry_time = Some(text(value)),
            5060 | 5273 => {
                let ns = iso_time_ns(value)
                    .ok_or_else(|| bad(tag, "not YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z"))?;
                if tag == 5060 {
                    entry.timestamp_ns = Some(ns);
                } else {
                    entry.queue_time_ns = Some(ns);
                }
            }
            40 => entry.ord_type = Some(one_of(40, value, b"12")?),
            2446 => entry.aggressor_side = Some(one_of(2446, value, b"12")?),
            _ => {} // allowed but not used (290, 346, ...)
        }
    }
    if msg_type == "X" && entry.action.is_none() {
        return Err(RejectReason::MissingField(279));
    }
    for (tag, present) in [
        (269, entry.entry_type != 0),
        (270, entry.price.is_some()),
        (271, entry.size.is_some()),
    ] {
        if !present {
            return Err(RejectReason::MissingField(tag));
        }
    }
    Ok(entry)
}

// ---- time -------------------------------------------------------------------------------

/// Days from 1970-01-01 to the civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn digits_value(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0')),
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// ns since the epoch for validated calendar parts and a 0..=9 digit fraction.
fn to_ns(parts: [i64; 6], frac: &[u8]) -> Option<i64> {
    let [y, mo, d, h, mi, s] = parts;
    if !(1970..=2261).contains(&y)
        || !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || s > 60
    {
        return None;
    }
    if frac.len() > 9 {
        return None;
    }
    let frac_ns = if frac.is_empty() {
        0
    } else {
        digits_value(frac)? * 10i64.pow(9 - u32::try_from(frac.len()).ok()?)
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// `YYYYMMDD-HH:MM:SS[.f{1,9}]` (FIX UTCTimestamp) to ns.
pub fn fix_time_ns(v: &[u8]) -> Option<i64> {
    if v.len() < 17
        || v.get(8) != Some(&b'-')
        || v.get(11) != Some(&b':')
        || v.get(14) != Some(&b':')
    {
        return None;
    }
    let frac: &[u8] = match v.get(17) {
        None => &[],
        Some(b'.') if v.len() > 18 => v.get(18..)?,
        _ => return None,
    };
    let part = |a: usize, b: usize| v.get(a..b).and_then(digits_value);
    to_ns(
        [
            part(0, 4)?,
            part(4, 6)?,
            part(6, 8)?,
            part(9, 11)?,
            part(12, 14)?,
            part(15, 17)?,
        ],
        frac,
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z` (ISO 8601, UTC) to ns.
pub fn iso_time_ns(v: &[u8]) -> Option<i64> {
    if v.len() < 20
        || v.get(4) != Some(&b'-')
        || v.get(7) != Some(&b'-')
        || v.get(10) != Some(&b'T')
        || v.get(13) != Some(&b':')
        || v.get(16) != Some(&b':')
        || v.last() != Some(&b'Z')
    {
        return None;
    }
    let frac: &[u8] = match v.get(19) {
        Some(b'Z') if v.len() == 20 => &[],
        Some(b'.') if v.len() > 21 => v.get(20..v.len() - 1)?,
        _ => return None,
    };
    let part = |a: usize, b: usize| v.get(a..b).and_then(digits_value);
    to_ns(
        [
            part(0, 4)?,
            part(5, 7)?,
            part(8, 10)?,
            part(11, 13)?,
            part(14, 16)?,
            part(17, 19)?,
        ],
        frac,
    )
}

/// Format ns as a FIX UTCTimestamp with `decimals` (0, 3, 6 or 9) fractional digits.
pub fn format_fix_time(ns: i64, decimals: u32) -> Option<String> {
    if ns < 0 || !matches!(decimals, 0 | 3 | 6 | 9) {
        return None;
    }
    let (secs, sub) = (ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}{mo:02}{d:02}-{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if decimals > 0 {
        let frac = sub / 10i64.pow(9 - decimals);
        out.push_str(&format!(".{frac:0width$}", width = decimals as usize));
    }
    Some(out)
}

// ---- encoder ------------------------------------------------------------------------------

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// A value is empty or contains SOH.
    BadValue(u32),
    /// Tag 0, or a header/trailer tag given as a body field.
    BadTag(u32),
    /// MsgType empty or containing SOH/`=`.
    BadMsgType,
    /// SendingTime negative or beyond year 2261.
    BadTime,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BadValue(t) => write!(f, "tag {t}: empty value or SOH inside"),
            EncodeError::BadTag(t) => write!(f, "tag {t} cannot be a body field"),
            EncodeError::BadMsgType => write!(f, "MsgType empty or with SOH or '='"),
            EncodeError::BadTime => write!(f, "SendingTime out of range"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// The header of a message to encode.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    pub msg_type: &'a str,
    pub seq_num: u64,
    pub sender: &'a str,
    pub target: &'a str,
    pub sending_time_ns: i64,
    pub poss_dup: bool,
    pub orig_sending_time_ns: Option<i64>,
}

fn push_field(out: &mut Vec<u8>, tag: u32, value: &[u8]) -> Result<(), EncodeError> {
    if value.is_empty() || value.contains(&SOH) {
        return Err(EncodeError::BadValue(tag));
    }
    out.extend_from_slice(tag.to_string().as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(SOH);
    Ok(())
}

/// Encode a complete message: standard header, `body` in order, BodyLength and CheckSum.
///
/// Repeating groups are given flat, count field first (`(268, "2"), (269, "0"), ...`).
pub fn encode(header: &Header<'_>, body: &[(u32, &[u8])]) -> Result<Vec<u8>, EncodeError> {
    let mt = header.msg_type.as_bytes();
    if mt.is_empty() || mt.contains(&SOH) || mt.contains(&b'=') {
        return Err(EncodeError::BadMsgType);
    }
    let time = |ns: i64| {
        format_fix_time(ns, 3)
            .filter(|_| ns < 9_214_646_400_000_000_000)
            .ok_or(EncodeError::BadTime)
    };
    let mut inner = Vec::with_capacity(64 + body.len() * 16);
    push_field(&mut inner, 35, mt)?;
    push_field(&mut inner, 34, header.seq_num.to_string().as_bytes())?;
    push_field(&mut inner, 49, header.sender.as_bytes())?;
    push_field(&mut inner, 52, time(header.sending_time_ns)?.as_bytes())?;
    push_field(&mut inner, 56, header.target.as_bytes())?;
    if header.poss_dup {
        push_field(&mut inner, 43, b"Y")?;
        let orig = header
            .orig_sending_time_ns
            .unwrap_or(header.sending_time_ns);
        push_field(&mut inner, 122, time(orig)?.as_bytes())?;
    }
    for &(tag, value) in body {
        if matches!(tag, 0 | 8 | 9 | 10 | 35 | 34 | 49 | 52 | 56 | 43 | 122) {
            return Err(EncodeError::BadTag(tag));
        }
        push_field(&mut inner, tag, value)?;
    }
    let mut out = Vec::with_capacity(inner.len() + 32);
    out.extend_from_slice(BEGIN);
    out.extend_from_slice(format!("9={}", inner.len()).as_bytes());
    out.push(SOH);
    out.extend_from_slice(&inner);
    let sum = checksum(&out);
    out.extend_from_slice(format!("10={sum:03}").as_bytes());
    out.push(SOH);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_688_737_347_230_000_000; // 2023-07-07 13:42:27.230 UTC

    fn header(msg_type: &str, seq: u64) -> Header<'_> {
        Header {
            msg_type,
            seq_num: seq,
            sender: "KRAKEN-MD",
            target: "CLIENT",
            sending_time_ns: T0,
            poss_dup: false,
            orig_sending_time_ns: None,
        }
    }

    fn x_message() -> Vec<u8> {
        let body: Vec<(u32, &[u8])> = vec![
            (55, b"BTC/USD"),
            (262, b"1"),
            (268, b"2"),
            (279, b"2"),
            (269, b"1"),
            (278, b"O30300.7"),
            (270, b"30300.7"),
            (271, b"0.0"),
            (273, b"13:42:27.208"),
            (279, b"0"),
            (269, b"1"),
            (278, b"O31941.0"),
            (270, b"31941.0"),
            (271, b"0.0031746"),
            (273, b"20:40:00.455"),
            (5041, b"1234567"),
        ];
        encode(&header("X", 100), &body).unwrap()
    }

    fn one(bytes: &[u8]) -> Frame {
        let frames = Framer::new().feed(bytes);
        assert_eq!(frames.len(), 1, "{frames:?}");
        frames.into_iter().next().unwrap()
    }

    #[test]
    fn find_agrees_with_a_naive_search() {
        let naive = |hay: &[u8], needle: &[u8], from: usize| {
            (from..=hay.len().saturating_sub(needle.len()))
                .find(|&i| hay.get(i..i + needle.len()) == Some(needle))
                .filter(|_| from <= hay.len() && hay.len() >= needle.len())
        };
        let mut hay = x_message();
        hay.extend(b"\x01\x0110\x0110=\x01\x01\x011");
        hay.extend([0x01, 0x02, 0x81, 0x00, 0x01, b'1', b'0', b'=']);
        for needle in [&b"\x0110="[..], b"\x01", b"10=", b"=", b"\x00\x01", b"zz"] {
            for from in 0..=hay.len() + 1 {
                for end in [hay.len(), hay.len().saturating_sub(3), from.min(hay.len())] {
                    let h = &hay[..end];
                    assert_eq!(
                        find(h, needle, from),
                        naive(h, needle, from),
                        "{needle:?} {from} {end}"
                    );
                }
            }
        }
        assert_eq!(find(b"abc", b"", 0), None);
    }

    #[test]
    fn encodes_bodylength_and_checksum_by_hand() {
        let msg = encode(&header("0", 2), &[]).unwrap();
        let text = String::from_utf8(msg.clone()).unwrap().replace('\x01', "|");
        assert_eq!(
            text,
            "8=FIX.4.4|9=58|35=0|34=2|49=KRAKEN-MD|52=20230707-13:42:27.230|56=CLIENT|10=016|"
        );
        let body_start = text.find("35=").unwrap();
        let trailer = text.find("10=").unwrap();
        assert_eq!(trailer - body_start, 58);
        assert_eq!(checksum(&msg[..trailer]), 16);
    }

    #[test]
    fn round_trips_incremental_refresh() {
        let frame = one(&x_message());
        let msg = frame.result.unwrap();
        assert_eq!(msg.msg_type, "X");
        assert_eq!(msg.seq_num, 100);
        assert_eq!(msg.sending_time_ns, T0);
        assert_eq!(msg.field(55), Some("BTC/USD"));
        assert_eq!(msg.book_checksum, Some(1_234_567));
        assert_eq!(msg.entries.len(), 2);
        let e = &msg.entries[1];
        assert_eq!(e.action, Some(0));
        assert_eq!(e.entry_type, b'1');
        assert_eq!(e.entry_id.as_deref(), Some("O31941.0"));
        assert_eq!(
            e.price,
            Some(Decimal {
                mantissa: 319_410,
                scale: 1
            })
        );
        assert_eq!(
            e.size,
            Some(Decimal {
                mantissa: 31_746,
                scale: 7
            })
        );
        assert_eq!(e.entry_time.as_deref(), Some("20:40:00.455"));
        assert_eq!(
            msg.entries[0].size,
            Some(Decimal {
                mantissa: 0,
                scale: 1
            })
        );
    }

    #[test]
    fn frames_any_split_and_many_per_call() {
        let mut stream = Vec::new();
        for seq in 1..=5 {
            stream.extend(encode(&header("0", seq), &[]).unwrap());
        }
        stream.extend(x_message());
        for chunk in [1usize, 2, 7, 64, stream.len()] {
            let mut framer = Framer::new();
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                frames.extend(framer.feed(piece));
            }
            assert_eq!(framer.pending(), 0);
            let seqs: Vec<u64> = frames
                .iter()
                .map(|f| f.result.as_ref().unwrap().seq_num)
                .collect();
            assert_eq!(seqs, vec![1, 2, 3, 4, 5, 100], "chunk {chunk}");
            let raw: Vec<u8> = frames.iter().flat_map(|f| f.raw.clone()).collect();
            assert_eq!(raw, stream);
        }
    }

    #[test]
    fn garbage_is_rejected_and_resynchronised() {
        let good = encode(&header("0", 7), &[]).unwrap();
        let mut stream = b"hello\x01world 8=FIX".to_vec();
        stream.extend(&good);
        let frames = Framer::new().feed(&stream);
        assert_eq!(frames.len(), 2);
        assert_eq!(
            frames[0].result.as_ref().unwrap_err().reason,
            RejectReason::Garbage
        );
        assert_eq!(frames[0].raw, b"hello\x01world 8=FIX");
        assert_eq!(frames[1].result.as_ref().unwrap().seq_num, 7);
        // a different BeginString is garbage too
        let frames = Framer::new().feed(b"8=FIX.4.2\x019=5\x0135=0\x0110=000\x01");
        assert!(
            frames
                .iter()
                .all(|f| f.result.as_ref().unwrap_err().reason == RejectReason::Garbage)
        );
    }

    #[test]
    fn garbage_tail_that_may_start_a_message_is_kept() {
        let mut framer = Framer::new();
        let frames = framer.feed(b"xyz8=FI");
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].raw, b"xyz");
        assert_eq!(framer.pending(), 4);
        let good = encode(&header("0", 1), &[]).unwrap();
        let frames = framer.feed(&good[4..]);
        assert_eq!(frames[0].result.as_ref().unwrap().seq_num, 1);
    }

    #[test]
    fn wrong_body_length_is_rejected_and_next_message_survives() {
        let good = encode(&header("0", 3), &[]).unwrap();
        let text = String::from_utf8(good.clone()).unwrap();
        for wrong in ["9=57", "9=59", "9=5"] {
            let mut bad = text.replacen("9=58", wrong, 1).into_bytes();
            bad.extend(&good);
            let frames = Framer::new().feed(&bad);
            assert_eq!(frames.len(), 2, "{wrong}");
            let r = frames[0].result.as_ref().unwrap_err();
            assert_eq!(r.reason.code(), "body_length", "{wrong}");
            assert_eq!(frames[1].result.as_ref().unwrap().seq_num, 3);
        }
        for wrong in ["9=x", "9=", "9=99999999999", "9=1000001"] {
            let mut bad = text.replacen("9=58", wrong, 1).into_bytes();
            bad.extend(&good);
            let frames = Framer::new().feed(&bad);
            assert_eq!(
                frames[0].result.as_ref().unwrap_err().reason.code(),
                "body_length",
                "{wrong}"
            );
            assert_eq!(
                frames.last().unwrap().result.as_ref().unwrap().seq_num,
                3,
                "{wrong}"
            );
        }
    }

    #[test]
    fn bad_checksum_is_rejected_with_both_values() {
        let good = encode(&header("0", 2), &[]).unwrap();
        let text = String::from_utf8(good).unwrap();
        let bad = text.replace("10=016", "10=017");
        let frame = one(bad.as_bytes());
        assert_eq!(
            frame.result.unwrap_err().reason,
            RejectReason::Checksum {
                declared: Some(17),
                computed: 16
            }
        );
        let frame = one(text.replace("10=016", "10=0x6").as_bytes());
        assert_eq!(frame.result.unwrap_err().reason.code(), "checksum");
    }

    #[test]
    fn unknown_msg_type_keeps_seq_for_a_session_reject() {
        let msg = encode(&header("ZZ", 9), &[(58, b"hi")]).unwrap();
        let r = one(&msg).result.unwrap_err();
        assert_eq!(r.reason, RejectReason::UnknownMsgType("ZZ".into()));
        assert_eq!(r.seq_num, Some(9));
        assert_eq!(r.msg_type.as_deref(), Some("ZZ"));
        assert_eq!(r.reason.tag(), Some(35));
    }

    #[test]
    fn huge_group_is_rejected_before_allocation() {
        let body: Vec<(u32, &[u8])> = vec![(55, b"BTC/USD"), (262, b"1"), (268, b"4000000000")];
        let r = one(&encode(&header("W", 1), &body).unwrap())
            .result
            .unwrap_err();
        assert_eq!(r.reason, RejectReason::GroupTooLarge(4_000_000_000));
        let body: Vec<(u32, &[u8])> = vec![(55, b"BTC/USD"), (262, b"1"), (268, b"99999999999999")];
        let r = one(&encode(&header("W", 1), &body).unwrap())
            .result
            .unwrap_err();
        assert_eq!(r.reason.code(), "bad_field");
    }

    #[test]
    fn group_count_and_shape_are_checked() {
        let base: Vec<(u32, &[u8])> = vec![(55, b"BTC/USD"), (262, b"1")];
        let entry: Vec<(u32, &[u8])> = vec![(269, b"0"), (278, b"a"), (270, b"1.5"), (271, b"2")];
        let mut two = base.clone();
        two.push((268, b"2"));
        two.extend(entry.iter().copied());
        let r = one(&encode(&header("W", 1), &two).unwrap())
            .result
            .unwrap_err();
        assert_eq!(r.reason.code(), "group_mismatch");
        let mut repeated = base.clone();
        repeated.push((268, b"1"));
        repeated.extend(entry.iter().copied());
        repeated.push((270, b"1.6"));
        let r = one(&encode(&header("W", 1), &repeated).unwrap())
            .result
            .unwrap_err();
        assert_eq!(r.reason.code(), "group_mismatch");
        let mut trade_in_w = base.clone();
        trade_in_w.extend([
            (268, b"1".as_slice()),
            (269, b"2"),
            (270, b"1"),
            (271, b"1"),
        ]);
        let r = one(&encode(&header("W", 1), &trade_in_w).unwrap())
            .result
            .unwrap_err();
        assert_eq!(r.reason.tag(), Some(269));
        let mut no_size = base.clone();
        no_size.extend([(268, b"1".as_slice()), (269, b"0"), (270, b"1")]);
        let r = one(&encode(&header("W", 1), &no_size).unwrap())
            .result
            .unwrap_err();
        assert_eq!(r.reason, RejectReason::MissingField(271));
        let mut empty = base.clone();
        empty.push((268, b"0"));
        let msg = one(&encode(&header("W", 1), &empty).unwrap())
            .result
            .unwrap();
        assert!(msg.entries.is_empty());
    }

    #[test]
    fn absurd_numbers_are_typed_rejects() {
        let cases: [(&[u8], &str); 4] = [
            (b"1e5", "bad_number"),
            (b"-1.0", "bad_number"),
            (b"99999999999999999999999", "bad_number"),
            (b"1.0000000000000000000001", "bad_number"),
        ];
        for (price, code) in cases {
            let body: Vec<(u32, &[u8])> = vec![
                (55, b"X/Y"),
                (262, b"1"),
                (268, b"1"),
                (269, b"0"),
                (270, price),
                (271, b"1"),
            ];
            let r = one(&encode(&header("W", 1), &body).unwrap())
                .result
                .unwrap_err();
            assert_eq!(r.reason.code(), code);
            assert_eq!(r.reason.tag(), Some(270));
        }
        let msg = encode(&header("0", 1), &[]).unwrap();
        let text = String::from_utf8(msg)
            .unwrap()
            .replace("34=1", "34=123456789012");
        // BodyLength and CheckSum no longer match: fix them up by re-framing the body
        let body_start = text.find("35=").unwrap();
        let trailer = text.find("10=").unwrap();
        let body = &text[body_start..trailer];
        let mut raw = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
        let sum = checksum(&raw);
        raw.extend(format!("10={sum:03}\x01").as_bytes());
        let r = one(&raw).result.unwrap_err();
        assert_eq!(r.reason.tag(), Some(34));
    }

    #[test]
    fn header_fields_are_required_and_single() {
        let make = |body: &str| {
            let mut raw = format!("8=FIX.4.4\x019={}\x01{body}", body.len()).into_bytes();
            let sum = checksum(&raw);
            raw.extend(format!("10={sum:03}\x01").as_bytes());
            one(&raw).result
        };
        let ok = "35=0\x0134=1\x0149=A\x0152=20230707-13:42:27\x0156=B\x01";
        assert_eq!(make(ok).unwrap().sending_time_ns, T0 - 230_000_000);
        let r = make("35=0\x0134=1\x0149=A\x0156=B\x01").unwrap_err();
        assert_eq!(r.reason, RejectReason::MissingField(52));
        let r = make("34=1\x0135=0\x0149=A\x0152=20230707-13:42:27\x0156=B\x01").unwrap_err();
        assert_eq!(r.reason, RejectReason::MissingField(35));
        let r =
            make("35=0\x0134=1\x0134=2\x0149=A\x0152=20230707-13:42:27\x0156=B\x01").unwrap_err();
        assert_eq!(r.reason, RejectReason::DuplicateField(34));
        let r = make("35=0\x0134=1\x0149=A\x0152=20230230-13:42:27\x0156=B\x01").unwrap_err();
        assert_eq!(r.reason.tag(), Some(52));
        let r = make("35=0\x0134=1\x0149=A\x0152=20230707-13:42:27\x0156=B\x01=5\x01").unwrap_err();
        assert_eq!(r.reason.code(), "malformed");
        let r =
            make("35=0\x0134=1\x0149=A\x0152=20230707-13:42:27\x0156=B\x01112=\x01").unwrap_err();
        assert_eq!(r.reason.code(), "bad_field");
        let r =
            make("35=2\x0134=1\x0149=A\x0152=20230707-13:42:27\x0156=B\x017=5\x01").unwrap_err();
        assert_eq!(r.reason, RejectReason::MissingField(16));
        let r =
            make("35=4\x0134=1\x0149=A\x0152=20230707-13:42:27\x0156=B\x0136=x\x01").unwrap_err();
        assert_eq!(r.reason.tag(), Some(36));
    }

    #[test]
    fn poss_dup_and_orig_sending_time() {
        let mut h = header("0", 4);
        h.poss_dup = true;
        h.orig_sending_time_ns = Some(T0 - 1_000_000_000);
        let msg = one(&encode(&h, &[]).unwrap()).result.unwrap();
        assert!(msg.poss_dup);
        assert_eq!(msg.orig_sending_time_ns, Some(T0 - 1_000_000_000));
    }

    #[test]
    fn times_parse_exactly() {
        assert_eq!(fix_time_ns(b"19700101-00:00:00"), Some(0));
        assert_eq!(fix_time_ns(b"19700101-00:00:00.000000001"), Some(1));
        assert_eq!(
            fix_time_ns(b"20240229-23:59:59.5"),
            Some(1_709_251_199_500_000_000)
        );
        assert_eq!(fix_time_ns(b"20230229-00:00:00"), None);
        assert_eq!(fix_time_ns(b"20230707-24:00:00"), None);
        assert_eq!(fix_time_ns(b"20230707-13:42:27."), None);
        assert_eq!(fix_time_ns(b"20230707-13:42:27.1234567890"), None);
        assert_eq!(
            iso_time_ns(b"2026-02-03T10:24:34.650069468Z"),
            Some(1_770_114_274_650_069_468)
        );
        assert_eq!(
            iso_time_ns(b"2026-02-03T10:24:34Z"),
            Some(1_770_114_274_000_000_000)
        );
        assert_eq!(iso_time_ns(b"2026-02-03T10:24:34.Z"), None);
        for ns in [0i64, T0, 1_770_114_274_650_069_468, 951_782_400_000_000_000] {
            let text = format_fix_time(ns, 9).unwrap();
            assert_eq!(fix_time_ns(text.as_bytes()), Some(ns), "{text}");
        }
        assert_eq!(format_fix_time(T0, 3).unwrap(), "20230707-13:42:27.230");
    }

    #[test]
    fn l3_snapshot_with_nanosecond_times() {
        let body: Vec<(u32, &[u8])> = vec![
            (55, b"BTC/USD"),
            (262, b"7"),
            (268, b"1"),
            (269, b"0"),
            (278, b"OABCDE-12345-FGHIJK"),
            (270, b"30300.00000"),
            (271, b"0.25000000"),
            (273, b"10:24:34.650"),
            (5060, b"2026-02-03T10:24:34.650069468Z"),
            (5273, b"2026-02-03T10:24:29.175114502Z"),
        ];
        let msg = one(&encode(&header("W", 2), &body).unwrap())
            .result
            .unwrap();
        let e = &msg.entries[0];
        assert_eq!(e.entry_id.as_deref(), Some("OABCDE-12345-FGHIJK"));
        assert_eq!(
            e.price,
            Some(Decimal {
                mantissa: 3_030_000_000,
                scale: 5
            })
        );
        assert_eq!(e.timestamp_ns, Some(1_770_114_274_650_069_468));
        assert_eq!(e.queue_time_ns, Some(1_770_114_269_175_114_502));
    }

    #[test]
    fn trade_entries_in_incremental() {
        let body: Vec<(u32, &[u8])> = vec![
            (55, b"BTC/USD"),
            (262, b"1"),
            (268, b"1"),
            (279, b"0"),
            (269, b"2"),
            (278, b"T1"),
            (270, b"30300.7"),
            (271, b"0.5"),
            (273, b"13:42:27.208"),
            (40, b"2"),
            (2446, b"1"),
        ];
        let msg = one(&encode(&header("X", 5), &body).unwrap())
            .result
            .unwrap();
        assert_eq!(msg.entries[0].entry_type, b'2');
        assert_eq!(msg.entries[0].ord_type, Some(b'2'));
        assert_eq!(msg.entries[0].aggressor_side, Some(b'1'));
    }

    #[test]
    fn encoder_refuses_what_it_cannot_frame() {
        assert_eq!(
            encode(&header("0", 1), &[(58, b"a\x01b")]),
            Err(EncodeError::BadValue(58))
        );
        assert_eq!(
            encode(&header("0", 1), &[(58, b"")]),
            Err(EncodeError::BadValue(58))
        );
        assert_eq!(
            encode(&header("0", 1), &[(10, b"1")]),
            Err(EncodeError::BadTag(10))
        );
        assert_eq!(encode(&header("", 1), &[]), Err(EncodeError::BadMsgType));
        let mut h = header("0", 1);
        h.sending_time_ns = -1;
        assert_eq!(encode(&h, &[]), Err(EncodeError::BadTime));
    }

    #[test]
    fn endless_body_without_trailer_is_cut() {
        let mut framer = Framer::new();
        let mut frames = framer.feed(b"8=FIX.4.4\x019=10\x0135=0\x01");
        let filler = vec![b'a'; 64 * 1024];
        for _ in 0..20 {
            frames.extend(framer.feed(&filler));
        }
        assert!(frames.iter().any(|f| matches!(
            f.result,
            Err(Reject {
                reason: RejectReason::TooLong(_),
                ..
            })
        )));
        assert!(framer.pending() <= MAX_MESSAGE_LEN + 64 * 1024 + 64);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_handled() {
        let msg = x_message();
        for cut in 0..msg.len() {
            let mut framer = Framer::new();
            let _ = framer.feed(&msg[..cut]);
        }
        for i in 0..msg.len() {
            for b in [0u8, 1, b'=', b'9', 0xff] {
                let mut m = msg.clone();
                m[i] = b;
                let frames = Framer::new().feed(&m);
                let covered: usize = frames.iter().map(|f| f.raw.len()).sum();
                assert!(covered <= m.len());
            }
        }
    }
}
