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
# Linear time: a scheme starts only where a run of scheme characters starts (the lookbehind),
# so a long run of letters is scanned once, not once from each of its characters.
_SCHEME = r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):"
_URL_CREDENTIALS = re.compile(_SCHEME + r"[^@/\s]+@")
# For text cut short: a URL's "user:password" whose "@" fell beyond the cut is masked too.
_URL_CREDENTIALS_OR_CUT = re.compile(_SCHEME + r"[^@/\s]+(?:@|\Z)")
# The longest text a log entry's message or field keeps (a traceback: MAX_EXC_CHARS).
MAX_LOG_CHARS = 8_000
MAX_EXC_CHARS = 32_000
_SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_key|apikey|authorization)", re.I)


def redact(text: str, max_chars: int | None = None) -> str:
    """Mask credentials embedded in URLs; with `max_chars`, cut the text to that length first
    (so that a huge text costs no more than a short one) and say how much was cut."""
    if max_chars is None or len(text) <= max_chars:
        return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)
    cut = _URL_CREDENTIALS_OR_CUT.sub(r"\g<scheme>\g<user>:***@", text[:max_chars])
    return f"{cut}… [{len(text) - max_chars} more characters]"


def _clean(key: str, value: Any) -> Any:
    if _SECRET_KEYS.search(key):
        return "***"
    if isinstance(value, str):
        return redact(value, MAX_LOG_CHARS)
    return value


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage(), MAX_LOG_CHARS),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _clean(key, value)
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info), MAX_EXC_CHARS)
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
