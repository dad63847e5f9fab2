"""Kraken market-data recorder: capture, archive, query and audit Kraken's books exactly."""

__version__ = "0.1.0"
