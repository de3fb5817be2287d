"""The Parquet lake and its atomic writes."""

from iot_mlops.lake.atomic import atomic_write
from iot_mlops.lake.store import DATA_FILE, QUARANTINE_FILE, Lake, connect, ident, parquet, row_count, sql_str

__all__ = ["DATA_FILE", "QUARANTINE_FILE", "Lake", "atomic_write", "connect", "ident", "parquet", "row_count", "sql_str"]
