"""Logging: JSON lines when not on a terminal, readable text on one.

Every record carries the node id and, when known, the view epoch (from the
source ``set_epoch_source`` registers) and the id of the HTTP request being
served (``bind_request_id``, a context variable, so it follows the request's
task). Fields passed with ``extra=`` appear in the JSON too. Hot paths log at
DEBUG only: there is no per-request logging at INFO (``uvicorn.access`` is held
at WARNING). The level is ``--log-level``/``CAUSALKV_LOG_LEVEL``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from causalkv.runtime.settings import NodeSettings

_encoder = msgspec.json.Encoder(enc_hook=repr)

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "causalkv_request_id", default=None
)
"""The id of the HTTP request the current task serves, if any."""

_epoch_source: Callable[[], int | None] | None = None

# Attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "epoch",
    "request_id",
    "taskName",
    "color_message",
}


def set_epoch_source(source: Callable[[], int | None] | None) -> None:
    """Where log records get the view epoch from (the node's runtime registers one)."""
    global _epoch_source
    _epoch_source = source


def bind_request_id(request_id: str) -> contextvars.Token[str | None]:
    """Tag the current task's log records with ``request_id`` (undo with ``reset_request_id``)."""
    return request_id_var.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    request_id_var.reset(token)


class ContextFilter(logging.Filter):
    """Adds ``epoch`` and ``request_id`` to every record that does not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "epoch", None) is None:
            source = _epoch_source
            epoch = None
            if source is not None:
                try:
                    epoch = source()
                except Exception:  # a log call must never fail because of its context
                    epoch = None
            record.epoch = epoch
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


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
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
                payload.setdefault(name, value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return _encoder.encode(payload).decode()


class TextFormatter(logging.Formatter):
    """``time node e<epoch> LEVEL logger: message [req <id>]`` for terminals."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        epoch = getattr(record, "epoch", None)
        request_id = getattr(record, "request_id", None)
        line = (
            f"{self.formatTime(record)} {self.node_id}"
            f"{'' if epoch is None else f' e{epoch}'} {record.levelname} {record.name}: "
            f"{record.getMessage()}{'' if request_id is None else f' [req {request_id}]'}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def configure_logging(settings: NodeSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(TextFormatter(settings.node_id))
    else:
        handler.setFormatter(JsonFormatter(settings.node_id))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
