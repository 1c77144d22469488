"""Persistent readers: one long-running reader per stream that must update often or is watched.

A process per frame pays ffmpeg's start-up and the RTSP handshake for every snapshot. Below
the crossover interval measured by bench/bench_capture.py (docs/benchmarks.md), keeping the
stream open is cheaper. `glimpser readers` runs one reader per such stream and keeps the
newest frame in Redis; the capture job takes that frame instead of starting ffmpeg, and
falls back to a direct grab (with its real error message) when no fresh frame is there.

The same process runs the live view's readers (glimpser/live.py): a stream with live viewers
gets a reader at GLIMPSER_LIVE_FPS (a snapshot reader is restarted at that rate, never
doubled), stopped GLIMPSER_LIVE_IDLE_SECONDS after the last viewer left. Every stored frame
is announced on a Redis channel so the web processes can fan it out.

Several readers processes (on one host or several) share the streams: each stream is read by
the one process holding its lease in Redis (glimpser/capture/leases.py). Every pass, a
process computes the same wanted set from the database and the live viewers, stops the
readers whose lease it lost, releases leases of streams no longer wanted, and tries to take
the leases nobody holds, up to its share:

    share = ceil(wanted streams / live readers processes) + LEASE_SLACK

where the live processes are those whose heartbeat is at most LIVE_PROCESS_SECONDS old
(itself included). The slack lets the shares cover every stream while a process is
starting or has just died; a process above its share keeps what it holds (taking a stream
from a process that reads it fine would cost a reconnection and frames), so the balance is
rough after a restart: new streams go to whoever has room. A killed process's leases expire
after LEASE_TTL_SECONDS and its heartbeat stops counting about then too, so the others take
its streams within a few seconds. The live view and the capture jobs read frames from
Redis, so they work whichever process reads.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import peewee
import redis

from glimpser import system_status
from glimpser.capture import leases, live
from glimpser.config import Settings
from glimpser.db import database
from glimpser.media.imaging import split_jpegs
from glimpser.models import Stream
from glimpser.runtime_settings import SettingsSource
from glimpser.sources import rtsp, youtube
from glimpser.sources.base import CaptureContext, CaptureError
from glimpser.sources.ffmpeg_grab import (
    DECODE_WHOLE,
    FAST_PROBE,
    WHOLE_PICTURES,
    ffmpeg_binary,
    last_error_line,
)
from glimpser.sources.http_fetch import iter_available, make_auth, open_stream
from glimpser.sources.network_guard import check_url, shared_proxy, with_address
from glimpser.sources.schemas import (
    MjpegConfig,
    RtspConfig,
    VideoConfig,
    YoutubeConfig,
    parse_config,
)
from glimpser.sources.video import NETWORK_WHITELIST, media_path

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 2.0
LEASE_SLACK = 1  # streams a process may hold above its even share (see the docstring)
# A readers process counts for sharing while its heartbeat (sent every pass) is this fresh.
LIVE_PROCESS_SECONDS = leases.LEASE_TTL_SECONDS
RESTART_BACKOFF_MAX = 60.0
# Up to this interval a reader decodes every frame; above it only keyframes (-skip_frame
# nokey), which costs a fraction on a real camera but makes a frame up to one keyframe
# spacing old. Both limits come from bench/bench_capture.py on a 720p camera.
FULL_DECODE_MAX_INTERVAL = 2

Command = list[str] | Callable[[], list[str]]


frame_key = live.frame_key  # one key builder, shared with the web's frame broker


def latest_frame(connection: redis.Redis, stream_id: int, max_age: float) -> bytes | None:
    """The newest frame a reader left for this stream, if it is at most max_age seconds old."""
    data, at = connection.hmget(frame_key(stream_id), "jpeg", "at")
    if data is None or at is None or time.time() - float(at) > max_age:
        return None
    return data


def wants_reader(stream: Stream, max_interval: int) -> bool:
    return bool(stream.enabled and stream.kind == "rtsp" and stream.interval <= max_interval)


def _image_pipe(input_args: list[str], source: str, fps: float) -> list[str]:
    """ffmpeg writing `fps` JPEGs a second, whole pictures only (see WHOLE_PICTURES: a reader
    joins a live stream mid-way, and its first keyframe can be damaged)."""
    whole: list[str] = []
    for key, value in DECODE_WHOLE.items():
        whole += [f"-{key}", value]
    return [
        ffmpeg_binary(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        *whole,
        *input_args,
        "-i",
        source,
        "-vf",
        f"{WHOLE_PICTURES},fps={fps:g}",
        "-f",
        "image2pipe",
        "-c:v",
        "mjpeg",
        "-q:v",
        "3",
        "pipe:",
    ]


def reader_command(
    config: RtspConfig, ctx: CaptureContext, fps: float, keyframes_only: bool = False
) -> list[str]:
    """ffmpeg that keeps the stream open and writes `fps` JPEG frames a second to stdout."""
    addr = check_url(config.url, ctx, RtspConfig.URL_SCHEMES)
    args = ["-skip_frame", "nokey"] if keyframes_only else []
    for key, value in rtsp.input_args(config).items():
        args += [f"-{key}", str(value)]
    url = with_address(config.url, addr)  # the checked address: no second lookup by ffmpeg
    source = rtsp.url_with_credentials(url, config.username, config.secret("password"))
    return _image_pipe(args, source, fps)


def _network_args(timeout: float, ctx: CaptureContext) -> list[str]:
    """Input options for a network URL: every http(s) request (redirects, HLS segments) goes
    through the process's SSRF guard proxy (sources.network_guard.shared_proxy)."""
    args: list[str] = []
    for key, value in FAST_PROBE.items():
        args += [f"-{key}", str(value)]
    return args + [
        "-protocol_whitelist",
        NETWORK_WHITELIST,
        "-rw_timeout",
        str(int(timeout * 1_000_000)),
        "-http_proxy",
        shared_proxy(ctx).url,
    ]


def video_command(config: VideoConfig, ctx: CaptureContext, fps: float) -> list[str]:
    """Play a video in real time (-re): files loop, URLs (HLS, MP4) play until they end."""
    if config.path:
        source = str(media_path(config.path, ctx.media_dir))
        return _image_pipe(["-re", "-stream_loop", "-1"], source, fps)
    check_url(config.url, ctx, VideoConfig.URL_SCHEMES)
    return _image_pipe(["-re", *_network_args(config.timeout, ctx)], config.url, fps)


def youtube_command(
    config: YoutubeConfig, ctx: CaptureContext, fps: float, fresh: bool
) -> tuple[Callable[[], list[str]], list[str]]:
    """A builder that resolves the page (yt-dlp, cached) when the reader starts, off the hub's
    loop; and a list that receives the media URL, to keep it out of error messages."""
    hidden: list[str] = []

    def build() -> list[str]:
        check_url(config.url, ctx, youtube.PAGE_SCHEMES)
        key = (config.url, config.quality)
        if fresh:
            youtube.CACHE.invalidate(key)
        media = youtube.CACHE.get(key)
        if media is None:
            media = youtube.resolve(config, ctx)
            youtube.CACHE.put(key, media)
        check_url(media.url, ctx, youtube.MEDIA_SCHEMES)
        hidden.append(media.url)
        args = ([] if media.is_live else ["-re"]) + _network_args(config.timeout, ctx)
        if media.headers:
            args += ["-headers", youtube._header_block(media.headers)]
        return _image_pipe(args, media.url, fps)

    return build, hidden


class StreamReader:
    """One ffmpeg process and the thread that moves its frames into Redis."""

    def __init__(
        self, stream_id: int, interval: int, command: Command, connection: redis.Redis
    ) -> None:
        self.stream_id = stream_id
        self.interval = interval
        self.command = command
        self.connection = connection
        self.frames = 0
        self.hidden: list[str] = []  # strings (signed URLs) never shown in an error
        self.proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stderr_tail: collections.deque[bytes] = collections.deque(maxlen=20)
        self._stderr_thread: threading.Thread | None = None
        self._error = ""
        self._lock = threading.Lock()
        self._stopping = False
        self.ok_reported = False
        # Watchdog (0: off): a reader that runs but has not stored a frame for this long is
        # restarted by the hub, e.g. a camera that hangs mid-stream without closing.
        self.stall_after = 0.0
        self.last_frame = time.monotonic()

    def start(self) -> None:
        self.last_frame = time.monotonic()
        if not callable(self.command):
            self._spawn(self.command)
        self._thread = threading.Thread(
            target=self._run, name=f"reader-{self.stream_id}", daemon=True
        )
        self._thread.start()

    def _spawn(self, command: list[str]) -> None:
        with self._lock:
            if self._stopping:
                return
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        # Drain stderr all the time: a camera with recurring decode errors would otherwise
        # fill the pipe and block ffmpeg.
        self._stderr_thread = threading.Thread(target=self._drain, daemon=True)
        self._stderr_thread.start()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr_tail.append(line)

    def _frames(self) -> Iterator[bytes]:
        if self.proc is None:
            assert callable(self.command)
            self._spawn(self.command())
        if self.proc is None or self.proc.stdout is None:
            return
        stdout = self.proc.stdout
        yield from split_jpegs(iter(lambda: stdout.read1(65536), b""))

    def _run(self) -> None:
        try:
            for jpeg in self._frames():
                self._store(jpeg)
                if self._stopping:
                    break
        except CaptureError as exc:
            self._error = str(exc)
        except (redis.RedisError, OSError, ValueError) as exc:
            log.warning("reader stopped", extra={"stream_id": self.stream_id, "error": str(exc)})

    def _store(self, jpeg: bytes) -> None:
        self.frames += 1
        self.last_frame = time.monotonic()
        at = time.time()
        pipe = self.connection.pipeline()
        pipe.hset(frame_key(self.stream_id), mapping={"jpeg": jpeg, "at": at})
        pipe.expire(frame_key(self.stream_id), max(10, self.interval * 3))
        pipe.publish(live.notify_channel(self.stream_id), f"{at:.3f}")
        pipe.execute()

    def stalled(self) -> bool:
        """No frame stored for stall_after seconds (since the start or the last frame)."""
        return bool(self.stall_after) and time.monotonic() - self.last_frame > self.stall_after

    def alive(self) -> bool:
        if self.proc is None:  # still resolving the source, or it failed before ffmpeg
            return self._thread is not None and self._thread.is_alive()
        return self.proc.poll() is None

    def error(self) -> str:
        """Why the reader ended: the resolver's error or ffmpeg's last error line."""
        if self.alive():
            return ""
        message = self._error
        if not message and self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2)
            message = last_error_line(b"".join(self._stderr_tail))
        for secret in self.hidden:
            message = message.replace(secret, youtube._short(secret))
        return message

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)


class MjpegReader(StreamReader):
    """An MJPEG camera's own JPEG parts, re-published as they come (at most `fps` a second):
    no ffmpeg, nothing decoded or re-encoded (docs/benchmarks.md, live section)."""

    def __init__(
        self,
        stream_id: int,
        interval: int,
        config: MjpegConfig,
        ctx: CaptureContext,
        fps: float,
        connection: redis.Redis,
    ) -> None:
        super().__init__(stream_id, interval, [], connection)
        self.config, self.ctx, self.gap = config, ctx, 1.0 / fps

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"reader-{self.stream_id}", daemon=True
        )
        self._thread.start()

    def _frames(self) -> Iterator[bytes]:
        config = self.config
        auth = make_auth(config.auth, config.username, config.secret("password"))
        last = 0.0
        with open_stream(config.url, self.ctx, config.timeout, auth) as response:
            ctype = response.headers.get("content-type", "")
            if not ctype.startswith("multipart/"):
                raise CaptureError(f"not an MJPEG stream (content type {ctype or 'missing'})")
            for jpeg in split_jpegs(iter_available(response)):
                if self._stopping:
                    return
                now = time.monotonic()
                if now - last >= self.gap * 0.9:
                    last = now
                    yield jpeg
        if not self.frames:
            raise CaptureError("the stream ended before a whole frame arrived")

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def error(self) -> str:
        return "" if self.alive() else self._error

    def stop(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout=max(5, self.config.timeout))


class ReaderHub:
    """Keeps exactly the wanted readers running: starts, restarts (with backoff) and stops."""

    def __init__(self, settings: Settings, connection: redis.Redis) -> None:
        self.settings = settings
        self.connection = connection
        self.ctx = CaptureContext.from_settings(settings)
        self.source = SettingsSource(settings, connection)  # Admin → Settings' changes
        self.readers: dict[int, StreamReader] = {}
        self._failures: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}
        self._signature: dict[int, tuple] = {}
        self._mode: dict[int, str] = {}
        self._watched: set[int] = set()
        self.leases = leases.Leases(connection)
        self.stopping = False

    def _wanted(self) -> dict[int, tuple[Stream, str]]:
        """Stream id -> (stream, "live" | "snapshot") for every stream that needs a reader."""
        try:
            self._watched = live.watched_streams(self.connection)
        except redis.RedisError as exc:  # keep the last known set until Redis is back
            log.warning("cannot read live viewers", extra={"error": str(exc)})
        query = Stream.select().where(
            (Stream.kind == "rtsp") | Stream.id.in_(list(self._watched) or [0])
        )
        wanted: dict[int, tuple[Stream, str]] = {}
        for stream in query:
            if stream.id in self._watched and stream.kind in live.LIVE_KINDS:
                wanted[stream.id] = (stream, "live")
            elif wants_reader(stream, self.settings.reader_max_interval):
                wanted[stream.id] = (stream, "snapshot")
        return wanted

    def follow_settings(self) -> None:
        """Take up changed settings (Admin → Settings); readers whose capture settings (deny
        list, loopback, JPEG cap) changed are restarted with the new ones."""
        current = self.source.get()
        if current is self.settings:
            return
        self.settings = current
        ctx = CaptureContext.from_settings(current)
        if ctx != self.ctx:
            self.ctx = ctx
            self._signature.clear()  # every reader is restarted by the next pass
        log.info("settings changed")

    def reconcile(self) -> None:
        """One pass: take or give up leases, then compare the wanted streams with the running
        readers of the streams this process holds."""
        self.follow_settings()
        self.leases.start_keeper()
        wanted = self._wanted()
        for stream_id in sorted(self.leases.take_lost()):
            reader = self.readers.pop(stream_id, None)
            if reader is not None:  # another process reads it now: stop ours
                log.warning("reader stopped: lease lost", extra={"stream_id": stream_id})
                reader.stop()
            self._forget(stream_id)
        for stream_id in sorted(self.leases.held() - set(wanted)):
            reader = self.readers.pop(stream_id, None)
            if reader is not None:
                reader.stop()  # stopped before the lease goes: never two readers at once
            self._forget(stream_id)
            with contextlib.suppress(redis.RedisError):  # else it expires by itself
                self.leases.release(stream_id)
        self._acquire(wanted)
        held = self.leases.held()
        for stream_id in list(self.readers):
            entry = wanted.get(stream_id)
            if stream_id not in held:  # not ours (any more): never read without the lease
                self.readers.pop(stream_id).stop()
            elif entry is None or self._signature.get(stream_id) != _signature(*entry):
                self.readers.pop(stream_id).stop()  # stopped before any replacement starts
                if entry is not None and self._mode.get(stream_id) != entry[1]:
                    self._failures.pop(stream_id, None)  # a new mode starts without backoff
                    self._retry_at.pop(stream_id, None)
        now = time.monotonic()
        for stream_id, (stream, mode) in wanted.items():
            if stream_id not in held:
                continue
            reader = self.readers.get(stream_id)
            if reader is None and self._mode.get(stream_id, mode) != mode:
                self._failures.pop(stream_id, None)  # e.g. a failing snapshot reader is
                self._retry_at.pop(stream_id, None)  # watched now: try at once
            if reader is not None and reader.alive() and reader.stalled():
                # Running but silent: the camera hangs mid-stream (or trickles bytes that
                # never make a picture, so ffmpeg's socket timeout never fires). Start over.
                reader._error = f"no frame for {reader.stall_after:g} s: the stream stalled"
                log.warning("reader stalled", extra={"stream_id": stream_id})
                reader.stop()
            if reader is not None and reader.alive():
                if reader.frames and not reader.ok_reported:
                    reader.ok_reported = True
                    self._failures.pop(stream_id, None)
                    self._report(stream_id, mode, "")
                continue
            if reader is not None:  # it died: note why, back off before the next start
                failures = self._failures.get(stream_id, 0) + 1
                self._failures[stream_id] = failures
                self._retry_at[stream_id] = now + min(2.0**failures, RESTART_BACKOFF_MAX)
                error = reader.error()
                log.info(
                    "reader exited",
                    extra={"stream_id": stream_id, "error": error, "failures": failures},
                )
                if error or not reader.frames:
                    self._report(stream_id, mode, error or "the stream ended without a frame")
                del self.readers[stream_id]
            if now < self._retry_at.get(stream_id, 0):
                continue
            self._start(stream, mode)

    def share(self, wanted: int) -> int:
        """How many streams this process may hold: its even share among the live readers
        processes (fresh heartbeats, itself included) plus LEASE_SLACK."""
        others = system_status.live_readers_processes(self.connection, LIVE_PROCESS_SECONDS)
        processes = len(others | {system_status.own_readers_key()})
        return math.ceil(wanted / processes) + LEASE_SLACK

    def _acquire(self, wanted: dict[int, tuple[Stream, str]]) -> None:
        """Take the leases of wanted streams that nobody holds, up to this process's share.
        A lease another process holds is never taken: it expires if that process dies."""
        held = self.leases.held()
        free = sorted(set(wanted) - held)
        if not free:
            return
        try:
            room = self.share(len(wanted)) - len(held)
            if room <= 0:
                return
            for stream_id, owner in leases.holders(self.connection, free).items():
                if room <= 0:
                    break
                if owner is None and self.leases.try_acquire(stream_id):
                    room -= 1
                    log.info("stream lease taken", extra={"stream_id": stream_id})
        except redis.RedisError as exc:  # no new leases until Redis answers
            log.warning("cannot take stream leases", extra={"error": str(exc)})

    def _forget(self, stream_id: int) -> None:
        """Drop a stream's restart bookkeeping when it is no longer this process's."""
        self._failures.pop(stream_id, None)
        self._retry_at.pop(stream_id, None)
        self._signature.pop(stream_id, None)
        self._mode.pop(stream_id, None)

    def _report(self, stream_id: int, mode: str, error: str) -> None:
        if mode != "live":
            return
        with contextlib.suppress(redis.RedisError):
            live.set_status(self.connection, stream_id, error)

    def _start(self, stream: Stream, mode: str) -> None:
        failures = self._failures.get(stream.id, 0)
        self._mode[stream.id] = mode
        try:
            config = parse_config(stream.config)
            if mode == "live":
                reader = self._live_reader(stream, config, failures)
                fps, keyframes_only = float(self.settings.live_fps), False
            else:
                assert isinstance(config, RtspConfig)
                fps = min(1.0, 2.0 / max(stream.interval, 1))  # two frames per interval, ≤ 1 fps
                keyframes_only = stream.interval > FULL_DECODE_MAX_INTERVAL
                command = reader_command(config, self.ctx, fps, keyframes_only)
                reader = StreamReader(stream.id, stream.interval, command, self.connection)
        except (CaptureError, ValueError) as exc:
            log.info("reader not started", extra={"stream_id": stream.id, "error": str(exc)})
            self._report(stream.id, mode, str(exc))
            self._failures[stream.id] = failures + 1
            self._retry_at[stream.id] = time.monotonic() + (
                min(2.0 ** (failures + 1), RESTART_BACKOFF_MAX)
                if mode == "live"
                else RESTART_BACKOFF_MAX
            )
            return
        reader.stall_after = stall_seconds(config, fps)
        reader.start()
        self.readers[stream.id] = reader
        self._signature[stream.id] = _signature(stream, mode)
        log.info(
            "reader started",
            extra={
                "stream_id": stream.id,
                "mode": mode,
                "fps": fps,
                "keyframes_only": keyframes_only,
            },
        )

    def _live_reader(self, stream: Stream, config: object, failures: int) -> StreamReader:
        """The reader for a watched stream, at GLIMPSER_LIVE_FPS."""
        fps = float(self.settings.live_fps)
        interval = stream.interval
        if isinstance(config, RtspConfig):
            command: Command = reader_command(config, self.ctx, fps)
        elif isinstance(config, VideoConfig):
            command = video_command(config, self.ctx, fps)
        elif isinstance(config, MjpegConfig):
            return MjpegReader(stream.id, interval, config, self.ctx, fps, self.connection)
        elif isinstance(config, YoutubeConfig):
            build, hidden = youtube_command(config, self.ctx, fps, fresh=failures > 0)
            reader = StreamReader(stream.id, interval, build, self.connection)
            reader.hidden = hidden
            return reader
        else:
            raise CaptureError(f"{stream.kind} streams have no live feed")
        return StreamReader(stream.id, interval, command, self.connection)

    def streams_report(self) -> list[dict]:
        """The streams this process holds and how each is doing (for Admin → System)."""
        report = []
        for stream_id in sorted(self.leases.held() | set(self.readers)):
            reader = self.readers.get(stream_id)
            if reader is not None:
                alive = reader.alive()
                state = "reading" if alive and reader.frames else "starting" if alive else "stopped"
            elif stream_id in self._retry_at:
                state = "waiting to restart"
            else:
                state = "starting"
            report.append(
                {
                    "id": stream_id,
                    "mode": self._mode.get(stream_id, ""),
                    "state": state,
                    "frames": reader.frames if reader is not None else 0,
                    "failures": self._failures.get(stream_id, 0),
                }
            )
        return report

    def heartbeat(self) -> None:
        """Tell Admin → System (and the other readers processes, which count it to share the
        streams) that this process runs and which streams it holds (a key with a TTL)."""
        try:
            system_status.publish_readers(
                self.connection, self.streams_report(), owner=self.leases.owner
            )
        except redis.RedisError as exc:
            log.warning("readers heartbeat not sent", extra={"error": str(exc)})

    def run(self) -> None:
        self.heartbeat()  # counted by the others before this process takes any stream
        while not self.stopping:
            try:
                with database.connection_context():
                    self.reconcile()
            except peewee.PeeweeException as exc:  # the database restarts: readers run on
                log.warning("cannot reach the database", extra={"error": str(exc)})
            self.heartbeat()
            try:  # sleep until the next tick, or until a new viewer wakes us
                self.connection.blpop([live.WAKE_KEY], timeout=RECONCILE_SECONDS)
            except redis.RedisError:
                time.sleep(RECONCILE_SECONDS)
        self.close()

    def close(self) -> None:
        """Stop every reader, then give up its lease (so another process takes the stream at
        once, not after the TTL) and the heartbeat."""
        for reader in self.readers.values():
            reader.stop()
        self.readers.clear()
        self.leases.stop_keeper()
        with contextlib.suppress(redis.RedisError):
            self.leases.release_all()
        with contextlib.suppress(redis.RedisError):  # gone from Admin → System at once
            system_status.withdraw_readers(self.connection)


def stall_seconds(config: object, fps: float) -> float:
    """How long a reader may go without a frame: twice the stream's capture timeout (which
    also covers connecting and probing), and never less than three frame periods."""
    return max(2.0 * float(getattr(config, "timeout", 15)), 3.0 / max(fps, 0.01))


def _signature(stream: Stream, mode: str = "snapshot") -> tuple:
    """What, when edited (or when viewers come and go), needs the reader restarted."""
    return (mode, stream.interval, repr(sorted(stream.config.items())))
