"""Persistent readers: one long-running ffmpeg per RTSP stream that must update often.

A process per frame pays ffmpeg's start-up and the RTSP handshake for every snapshot. Below
the crossover interval measured by bench/bench_capture.py (docs/benchmarks.md), keeping the
stream open is cheaper. `glimpser readers` runs one reader per such stream and keeps the
newest frame in Redis; the capture job takes that frame instead of starting ffmpeg, and
falls back to a direct grab (with its real error message) when no fresh frame is there.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time

import redis

from glimpser.config import Settings
from glimpser.imaging import split_jpegs
from glimpser.models import Stream
from glimpser.sources import rtsp
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.ffmpeg_grab import ffmpeg_binary, last_error_line
from glimpser.sources.network_guard import check_url
from glimpser.sources.schemas import RtspConfig, parse_config

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 2.0
RESTART_BACKOFF_MAX = 60.0
# Up to this interval a reader decodes every frame; above it only keyframes (-skip_frame
# nokey), which costs a fraction on a real camera but makes a frame up to one keyframe
# spacing old. Both limits come from bench/bench_capture.py on a 720p camera.
FULL_DECODE_MAX_INTERVAL = 2


def frame_key(stream_id: int) -> str:
    return f"glimpser:frame:{stream_id}"


def latest_frame(connection: redis.Redis, stream_id: int, max_age: float) -> bytes | None:
    """The newest frame a reader left for this stream, if it is at most max_age seconds old."""
    data, at = connection.hmget(frame_key(stream_id), "jpeg", "at")
    if data is None or at is None or time.time() - float(at) > max_age:
        return None
    return data


def wants_reader(stream: Stream, max_interval: int) -> bool:
    return bool(stream.enabled and stream.kind == "rtsp" and stream.interval <= max_interval)


def reader_command(
    config: RtspConfig, ctx: CaptureContext, fps: float, keyframes_only: bool = False
) -> list[str]:
    """ffmpeg that keeps the stream open and writes `fps` JPEG frames a second to stdout."""
    check_url(config.url, ctx, RtspConfig.URL_SCHEMES)
    args = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin"]
    if keyframes_only:
        args += ["-skip_frame", "nokey"]
    for key, value in rtsp.input_args(config).items():
        args += [f"-{key}", str(value)]
    args += [
        "-i",
        rtsp.url_with_credentials(config.url, config.username, config.secret("password")),
        "-vf",
        f"fps={fps:g}",
        "-f",
        "image2pipe",
        "-c:v",
        "mjpeg",
        "-q:v",
        "3",
        "pipe:",
    ]
    return args


class StreamReader:
    """One ffmpeg process and the thread that moves its frames into Redis."""

    def __init__(
        self, stream_id: int, interval: int, command: list[str], connection: redis.Redis
    ) -> None:
        self.stream_id = stream_id
        self.interval = interval
        self.command = command
        self.connection = connection
        self.frames = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._thread = threading.Thread(
            target=self._pump, name=f"reader-{self.stream_id}", daemon=True
        )
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        key = frame_key(self.stream_id)
        chunks = iter(lambda: self.proc.stdout.read1(65536), b"")  # type: ignore[union-attr]
        try:
            for jpeg in split_jpegs(chunks):
                self.frames += 1
                pipe = self.connection.pipeline()
                pipe.hset(key, mapping={"jpeg": jpeg, "at": time.time()})
                pipe.expire(key, max(10, self.interval * 3))
                pipe.execute()
        except (CaptureError, redis.RedisError, OSError, ValueError) as exc:
            log.warning("reader stopped", extra={"stream_id": self.stream_id, "error": str(exc)})

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def error(self) -> str:
        if self.proc is None or self.proc.stderr is None or self.alive():
            return ""
        return last_error_line(self.proc.stderr.read() or b"")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)


class ReaderHub:
    """Keeps exactly the wanted readers running: starts, restarts (with backoff) and stops."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.settings = settings
        self.connection = connection
        self.ctx = CaptureContext.from_settings(settings)
        self.readers: dict[int, StreamReader] = {}
        self._failures: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}
        self._signature: dict[int, tuple] = {}
        self.stopping = False

    def reconcile(self) -> None:
        """One pass: compare the wanted streams with the running readers."""
        wanted = {
            s.id: s for s in Stream.select() if wants_reader(s, self.settings.reader_max_interval)
        }
        for stream_id in list(self.readers):
            stream = wanted.get(stream_id)
            if stream is None or self._signature.get(stream_id) != _signature(stream):
                self.readers.pop(stream_id).stop()
        now = time.monotonic()
        for stream_id, stream in wanted.items():
            reader = self.readers.get(stream_id)
            if reader is not None and reader.alive():
                if reader.frames:
                    self._failures.pop(stream_id, None)
                continue
            if reader is not None:  # it died: note why, back off before the next start
                failures = self._failures.get(stream_id, 0) + 1
                self._failures[stream_id] = failures
                self._retry_at[stream_id] = now + min(2.0**failures, RESTART_BACKOFF_MAX)
                log.info(
                    "reader exited",
                    extra={"stream_id": stream_id, "error": reader.error(), "failures": failures},
                )
                del self.readers[stream_id]
            if now < self._retry_at.get(stream_id, 0):
                continue
            self._start(stream)

    def _start(self, stream: Stream) -> None:
        try:
            config = parse_config(stream.config)
            assert isinstance(config, RtspConfig)
            fps = min(1.0, 2.0 / max(stream.interval, 1))  # two frames per interval, ≤ 1 fps
            keyframes_only = stream.interval > FULL_DECODE_MAX_INTERVAL
            command = reader_command(config, self.ctx, fps, keyframes_only)
        except (CaptureError, ValueError) as exc:
            log.info("reader not started", extra={"stream_id": stream.id, "error": str(exc)})
            self._retry_at[stream.id] = time.monotonic() + RESTART_BACKOFF_MAX
            return
        reader = StreamReader(stream.id, stream.interval, command, self.connection)
        reader.start()
        self.readers[stream.id] = reader
        self._signature[stream.id] = _signature(stream)
        log.info(
            "reader started",
            extra={"stream_id": stream.id, "fps": fps, "keyframes_only": keyframes_only},
        )

    def run(self) -> None:
        from glimpser.db import database

        while not self.stopping:
            with database.connection_context():
                self.reconcile()
            time.sleep(RECONCILE_SECONDS)
        self.close()

    def close(self) -> None:
        for reader in self.readers.values():
            reader.stop()
        self.readers.clear()


def _signature(stream: Stream) -> tuple:
    """What, when edited, needs the reader restarted."""
    return (stream.interval, repr(sorted(stream.config.items())))
