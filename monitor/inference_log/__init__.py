"""The inference log: sampled calls as CloudEvents, written off the request path to a Redis
Stream, an HTTP endpoint and rolling Parquet files, and read back with labels joined."""

from monitor.inference_log.export import EmptyExportError, ExportSummary, export_log, read_log
from monitor.inference_log.log import InferenceLog, LogConfig
from monitor.inference_log.parquet import ParquetSink
from monitor.inference_log.records import (
    Inference,
    Label,
    Privacy,
    encode_event,
)
from monitor.inference_log.sinks import (
    HttpSink,
    LogSink,
    RedisStreamSink,
    RejectedError,
)

__all__ = [
    "EmptyExportError",
    "ExportSummary",
    "HttpSink",
    "Inference",
    "InferenceLog",
    "Label",
    "LogConfig",
    "LogSink",
    "ParquetSink",
    "Privacy",
    "RedisStreamSink",
    "RejectedError",
    "encode_event",
    "export_log",
    "read_log",
]
