"""gunicorn settings derived from GLIMPSER_* (used by `glimpser web` and the Procfile)."""

from glimpser.config import load_settings

_settings = load_settings()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.web_workers
# Threads, so that long-lived responses (live MJPEG views) do not block ordinary pages.
worker_class = "gthread"
threads = _settings.web_threads
timeout = 60
graceful_timeout = 10
# Our own JSON request log (glimpser.web.access_log) replaces gunicorn's access log.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
