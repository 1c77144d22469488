"""Live view plumbing shared by the web processes and the readers process.

Viewers register in Redis (a sorted set per stream, score = when the registration expires,
refreshed while the response streams), so `glimpser readers` knows which streams are watched
by any web process. The reader stores the newest frame in `glimpser:frame:<id>` and publishes a
small notification; each web process runs ONE subscriber thread (`FrameBroker`) that fetches
the frame once per notification and wakes its local viewers, which always send the newest
frame: a slow viewer skips frames, it never queues them or slows the others.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import redis

log = logging.getLogger(__name__)

# Kinds a reader can follow continuously; the others (website, http_image) show the latest
# snapshot refreshing itself instead.
LIVE_KINDS = frozenset({"rtsp", "video", "youtube", "mjpeg"})
VIEWER_TTL = 20.0  # a registration not refreshed for this long is gone (crashed web process)
REFRESH_SECONDS = 5.0  # how often a streaming response refreshes its registration
KEEPALIVE_SECONDS = 5.0  # resend the last frame this often: notices clients that left
NO_FRAME_GIVE_UP = 60.0  # end a response that got no frame for this long (the page retries)
BROKER_IDLE_EXIT = 30.0  # the subscriber thread ends after this long without local viewers
WATCHED_KEY = "glimpser:live:watched"  # stream id -> keep a live reader until (unix time)
WAKE_KEY = "glimpser:live:wake"  # a new viewer wakes the readers process at once
BOUNDARY = "glimpserframe"

# Remove one viewer; when it was the last, the reader may stay `idle` more seconds.
_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
end
return redis.call('ZCARD', KEYS[1])
"""


def frame_key(stream_id: int) -> str:
    """The hash where a reader leaves a stream's newest frame ("jpeg", "at")."""
    return f"glimpser:frame:{stream_id}"


def viewers_key(stream_id: int) -> str:
    return f"glimpser:live:viewers:{stream_id}"


def notify_channel(stream_id: int) -> str:
    return f"glimpser:live:frame:{stream_id}"


def status_key(stream_id: int) -> str:
    return f"glimpser:live:status:{stream_id}"


def max_live_responses(web_threads: int) -> int:
    """Live views one web process serves at once, on threads of their own (see gunicorn_conf)."""
    return 8 * web_threads


# --- viewer registry (web side) -------------------------------------------------------------


def register(connection: redis.Redis, stream_id: int, viewer: str, idle: float) -> None:
    """Add or refresh a viewer; the stream stays watched until its TTL plus the idle time."""
    now = time.time()
    pipe = connection.pipeline()
    pipe.zadd(viewers_key(stream_id), {viewer: now + VIEWER_TTL})
    pipe.expire(viewers_key(stream_id), int(VIEWER_TTL * 4))
    pipe.zadd(WATCHED_KEY, {str(stream_id): now + VIEWER_TTL + idle}, gt=True)
    pipe.execute()


def leave(connection: redis.Redis, stream_id: int, viewer: str, idle: float) -> int:
    """Remove a viewer; returns how many remain."""
    now = time.time()
    return int(
        connection.eval(
            _LEAVE, 2, viewers_key(stream_id), WATCHED_KEY, viewer, now, now + idle, stream_id
        )
    )


def viewer_count(connection: redis.Redis, stream_id: int) -> int:
    return int(connection.zcount(viewers_key(stream_id), time.time(), "+inf"))


def new_viewer_id() -> str:
    return uuid.uuid4().hex


def wake_readers(connection: redis.Redis) -> None:
    """Tell the readers process to reconcile now rather than at its next tick."""
    pipe = connection.pipeline()
    pipe.lpush(WAKE_KEY, 1)
    pipe.ltrim(WAKE_KEY, 0, 0)
    pipe.expire(WAKE_KEY, 30)
    pipe.execute()


# --- readers side ---------------------------------------------------------------------------


def watched_streams(connection: redis.Redis) -> set[int]:
    """Streams that have live viewers, or had one less than the idle time ago."""
    now = time.time()
    connection.zremrangebyscore(WATCHED_KEY, "-inf", now)
    return {int(m) for m in connection.zrangebyscore(WATCHED_KEY, now, "+inf")}


def set_status(connection: redis.Redis, stream_id: int, error: str) -> None:
    """The live reader's real error, shown on the live page ('' clears it)."""
    if error:
        connection.set(status_key(stream_id), error, ex=300)
    else:
        connection.delete(status_key(stream_id))


def reader_error(connection: redis.Redis, stream_id: int) -> str:
    value = connection.get(status_key(stream_id))
    return value.decode("utf-8", "replace") if value else ""


# --- fan-out inside one web process ---------------------------------------------------------


class Latest:
    """The newest frame of one stream in this process, and a wake-up signal per viewer.

    Each viewer waits on a lock of its own (released by put()), not on one shared Condition:
    with many viewers a shared Condition makes every woken thread queue again for its lock.
    """

    def __init__(self) -> None:
        self.frame: tuple[int, bytes | None] = (0, None)  # (sequence, framed part)
        self.users = 0
        self._signals: set[threading.Lock] = set()
        self._guard = threading.Lock()

    def put(self, jpeg: bytes) -> None:
        self.frame = (self.frame[0] + 1, part(jpeg))  # framed once per frame, not per viewer
        with self._guard:
            signals = list(self._signals)
        for signal in signals:
            if signal.locked():
                with contextlib.suppress(RuntimeError):  # released meanwhile
                    signal.release()

    def subscribe(self) -> threading.Lock:
        signal = threading.Lock()
        signal.acquire()
        with self._guard:
            self._signals.add(signal)
        return signal

    def unsubscribe(self, signal: threading.Lock) -> None:
        with self._guard:
            self._signals.discard(signal)

    def wait_newer(
        self, signal: threading.Lock, seq: int, timeout: float
    ) -> tuple[int, bytes | None]:
        """Block until a frame newer than `seq` arrives (or the timeout); the newest one,
        already framed as a multipart part."""
        deadline = time.monotonic() + timeout
        while self.frame[0] == seq:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            signal.acquire(timeout=remaining)  # may be a wake-up left from an earlier frame
        return self.frame


class FrameBroker:
    """One Redis subscription per web process, however many viewers it serves."""

    def __init__(self, connection: redis.Redis) -> None:
        self.connection = connection
        self._streams: dict[int, Latest] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, stream_id: int) -> Latest:
        with self._lock:
            latest = self._streams.setdefault(stream_id, Latest())
            latest.users += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="live-broker", daemon=True)
                self._thread.start()
            return latest

    def unwatch(self, stream_id: int) -> None:
        with self._lock:
            latest = self._streams.get(stream_id)
            if latest is not None:
                latest.users -= 1
                if latest.users <= 0:
                    del self._streams[stream_id]

    def _wanted(self) -> set[str]:
        with self._lock:
            return {notify_channel(i) for i in self._streams}

    def _run(self) -> None:
        idle_since: float | None = None
        pubsub = None
        subscribed: set[str] = set()
        while True:
            try:
                if pubsub is None:
                    pubsub = self.connection.pubsub(ignore_subscribe_messages=True)
                    subscribed = set()
                wanted = self._wanted()
                if not wanted:
                    idle_since = idle_since or time.monotonic()
                    with self._lock:
                        if time.monotonic() - idle_since > BROKER_IDLE_EXIT and not self._streams:
                            self._thread = None
                            break
                else:
                    idle_since = None
                if wanted - subscribed:
                    pubsub.subscribe(*(wanted - subscribed))
                if subscribed - wanted:
                    pubsub.unsubscribe(*(subscribed - wanted))
                subscribed = wanted
                if not subscribed:
                    time.sleep(0.5)
                    continue
                message = pubsub.get_message(timeout=0.5)
                if message and message.get("type") == "message":
                    self._deliver(message["channel"])
            except redis.RedisError as exc:
                log.warning("live subscription failed; retrying", extra={"error": str(exc)})
                if pubsub is not None:
                    pubsub.close()
                pubsub = None
                time.sleep(1)
        if pubsub is not None:
            pubsub.close()

    def _deliver(self, channel: bytes) -> None:
        stream_id = int(channel.rsplit(b":", 1)[1])
        with self._lock:
            latest = self._streams.get(stream_id)
        if latest is None:
            return
        jpeg = self.connection.hget(frame_key(stream_id), "jpeg")
        if jpeg:
            latest.put(jpeg)


def part(jpeg: bytes) -> bytes:
    """One multipart/x-mixed-replace part with its own Content-Type and Content-Length."""
    return (
        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
        + jpeg
        + b"\r\n"
    )


class LiveViewer:
    """One open live response: registered as a viewer from open() until close()."""

    def __init__(
        self, connection: redis.Redis, broker: FrameBroker, stream_id: int, idle: float
    ) -> None:
        self.connection, self.broker = connection, broker
        self.stream_id, self.idle = stream_id, idle
        self.viewer = new_viewer_id()
        self.latest: Latest | None = None

    def open(self) -> None:
        register(self.connection, self.stream_id, self.viewer, self.idle)
        wake_readers(self.connection)
        self.latest = self.broker.watch(self.stream_id)

    def close(self) -> None:
        """Called when the client goes away (or the response ends), even if never iterated."""
        if self.latest is None:
            return
        self.latest = None
        self.broker.unwatch(self.stream_id)
        with contextlib.suppress(redis.RedisError):  # else the registration expires by itself
            leave(self.connection, self.stream_id, self.viewer, self.idle)

    def parts(self, initial: bytes | None) -> Iterator[bytes]:
        """The newest frame each time one arrives; frames that came meanwhile are skipped."""
        latest = self.latest
        assert latest is not None, "open() first"
        signal = latest.subscribe()
        seq, last = latest.frame[0], part(initial) if initial else None
        refreshed = last_frame_at = time.monotonic()
        try:
            # Something at once, so the server sends the headers now: a frame, or else an
            # empty line, which multipart parsers skip as preamble (b"" would end a chunked
            # response in gunicorn).
            yield last or b"\r\n"
            while self.latest is not None:
                new_seq, framed = latest.wait_newer(signal, seq, timeout=KEEPALIVE_SECONDS)
                now = time.monotonic()
                if now - refreshed >= REFRESH_SECONDS:
                    register(self.connection, self.stream_id, self.viewer, self.idle)
                    refreshed = now
                if new_seq != seq and framed:
                    seq, last, last_frame_at = new_seq, framed, now
                    yield framed
                elif now - last_frame_at > NO_FRAME_GIVE_UP:
                    return
                elif last is not None:
                    yield last  # keep-alive: a client that left is noticed here
        finally:
            latest.unsubscribe(signal)


class LiveSlots:
    """A per-process cap on open live responses, so they never take every thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open -= 1
