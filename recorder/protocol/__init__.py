"""Pure, I/O-free understanding of Kraken's wire protocol: decoding, numbers, clocks, signing."""
