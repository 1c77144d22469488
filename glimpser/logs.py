"""Structured logging: one JSON object per line, with credentials in URLs masked."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

# Attributes every LogRecord has; anything else passed via `extra=` becomes a JSON field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

# user:password@ in any URL, e.g. rtsp://admin:hunter2@camera/... -> rtsp://admin:***@camera/...
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@"
)
_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key|apikey|authorization)", re.I)


def redact(text: str) -> str:
    """Mask credentials embedded in URLs."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


def _clean(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "***"
    if isinstance(value, str):
        return redact(value)
    return value


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _clean(key, value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records to stderr as JSON lines (idempotent)."""
    formatter = JSONFormatter()
    formatter.converter = __import__("time").gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # RQ installs its own handlers; route them through ours instead.
    for name in ("rq.worker", "rq.cron", "rq.scheduler", "rq.queue"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("werkzeug").setLevel("WARNING")
