"""`recorder sim`: a local Kraken exchange speaking Kraken's wire protocol over real sockets."""
