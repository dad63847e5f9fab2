//! Kraken's CRC32 book checksum from the two sides' cached checksum text.
//!
//! Kraken hashes the 10 best ask levels (price ascending) then the 10 best bid levels (price
//! descending); each level contributes its price digits then its quantity digits in units at
//! the pair's precision (level3: every order of the level, in queue order). The CRC is the
//! standard CRC-32 (IEEE, as `zlib.crc32`), unsigned.
//!
//! Books cache each side's text and the ask side's CRC: the book checksum is then
//! `crc32(bids_text)` continued from the ask CRC, so a message that changes only the bids
//! hashes about 10 levels of text.

/// Price levels per side that Kraken hashes, whatever the subscribed depth.
pub const CHECKSUM_LEVELS: usize = 10;

/// CRC32 of `text` (the ask half of a checksum).
#[inline]
pub fn crc32(text: &[u8]) -> u32 {
    crc32fast::hash(text)
}

/// CRC32 of `asks_text + bids_text` given `crc32(asks_text)`.
#[inline]
pub fn continue_crc32(ask_crc: u32, bids_text: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(ask_crc);
    hasher.update(bids_text);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn continuation_equals_the_whole() {
        assert_eq!(continue_crc32(crc32(b"1234"), b"56789"), 0xCBF4_3926);
        assert_eq!(continue_crc32(crc32(b""), b"123456789"), 0xCBF4_3926);
        assert_eq!(continue_crc32(crc32(b"123456789"), b""), 0xCBF4_3926);
    }

    #[test]
    fn guide_strings() {
        // Kraken's v2 book guide (BTC/USD snapshot): asks string then bids string.
        let asks = b"45285210000045286415457195345286615457110945289615456091145290215890660452918154553491452947445474945296135380000452975994554245299518772827";
        let bids = b"452835100000004528341545820154528211000000045281010000000452803154592586452790799000045277633101034527753000000045277315460273745276615445238";
        assert_eq!(continue_crc32(crc32(asks), bids), 3_310_070_434);
    }
}
