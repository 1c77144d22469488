"""The Redis connection and the named RQ queues every process agrees on."""

from __future__ import annotations

from urllib.parse import urlparse

import redis
from rq import Queue

# schedule: the short sweep that schedules captures; capture: ffmpeg/HTTP grabs; browser:
# Chromium captures (one browser per worker); analysis: motion and AI; notify: deliveries
# to channels; maintenance: retention, pruning.
QUEUE_NAMES: tuple[str, ...] = (
    "schedule",
    "capture",
    "browser",
    "analysis",
    "notify",
    "maintenance",
)
# The order a worker that serves every queue takes them in (first = most urgent).
WORKER_QUEUE_ORDER: tuple[str, ...] = (
    "schedule",
    "notify",
    "capture",
    "analysis",
    "browser",
    "maintenance",
)


def connect_redis(url: str) -> redis.Redis:
    """A client for the configured Redis (redis://, rediss:// or unix://)."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


def get_queue(name: str, connection: redis.Redis) -> Queue:
    if name not in QUEUE_NAMES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=connection)


def limiter_storage_uri(redis_url: str) -> str:
    """Flask-Limiter (the `limits` package) spells a unix-socket Redis URL differently."""
    parsed = urlparse(redis_url)
    if parsed.scheme == "unix":
        return f"redis+unix://{parsed.path}"
    return redis_url
