"""The archive: raw journal, exact Parquet datasets, manifest, compaction and retention."""
