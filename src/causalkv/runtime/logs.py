"""Logging: JSON lines when not on a terminal, readable text on one.

Every record carries the node id and, when known, the view epoch. Hot paths
log at DEBUG only.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from causalkv.runtime.settings import NodeSettings

_encoder = msgspec.json.Encoder()


class JsonFormatter(logging.Formatter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self.node_id,
            "message": record.getMessage(),
        }
        for field in ("epoch", "request_id"):
            value = getattr(record, field, None)
            if value is not None:
                payload[field] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(payload).decode()


def configure_logging(settings: NodeSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {settings.node_id} %(levelname)s %(name)s: %(message)s")
        )
    else:
        handler.setFormatter(JsonFormatter(settings.node_id))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
