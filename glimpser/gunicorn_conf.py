"""gunicorn settings derived from GLIMPSER_* (used by `glimpser web` and the Procfile)."""

from glimpser.capture.live import max_live_responses
from glimpser.config import load_settings

_settings = load_settings()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_workers
# Threads, so that long-lived responses (live MJPEG views) do not block ordinary pages.
# Each open live view holds a thread, so every worker gets GLIMPSER_WEB_THREADS threads for
# ordinary requests PLUS its own pool for live views (8 × GLIMPSER_WEB_THREADS); the app
# answers 503 beyond that cap (glimpser.web.live), so live views can never take the threads
# pages need. A waiting live view costs a parked thread, not CPU (docs/benchmarks.md, live).
worker_class = "gthread"
threads = _settings.web_threads + max_live_responses(_settings.web_threads)
timeout = 60
graceful_timeout = 10
# Our own JSON request log (glimpser.web.access_log) replaces gunicorn's access log.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
