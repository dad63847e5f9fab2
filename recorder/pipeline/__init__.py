"""The one pipeline shared by live capture and offline ingest (see :mod:`.core`)."""

from recorder.pipeline.core import DATASETS, ListSink, Pipeline, RowSink

__all__ = ["Pipeline", "RowSink", "ListSink", "DATASETS"]
