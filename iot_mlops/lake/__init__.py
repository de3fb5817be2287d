"""The Parquet lake and its atomic writes."""

from iot_mlops.lake.atomic import atomic_write
from iot_mlops.lake.store import Lake, connect, ident, row_count, sql_str

__all__ = ["Lake", "atomic_write", "connect", "ident", "row_count", "sql_str"]
