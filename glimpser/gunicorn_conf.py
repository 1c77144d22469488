"""gunicorn settings derived from GLIMPSER_* (used by `glimpser web` and the Procfile)."""

from glimpser import node
from glimpser.capture.live import max_live_responses
from glimpser.config import load_settings

_settings = load_settings()
node.configure(_settings.node_name)

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


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's worker object
    """Each web process beats (glimpser.heartbeats), so Admin → System shows it on its host."""
    from glimpser import heartbeats
    from glimpser.queues import connect_redis

    worker.glimpser_heartbeat = heartbeats.Heartbeat(
        connect_redis(_settings.redis_url), "web"
    ).start()


def worker_exit(server, worker) -> None:  # noqa: ANN001 - gunicorn's objects
    """A web process that stops removes its heartbeat."""
    beat = getattr(worker, "glimpser_heartbeat", None)
    if beat is not None:
        beat.stop()
