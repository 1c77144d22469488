"""The analysis job for one stored snapshot: detect → describe → rules → events.

1. Detection (motion.py) with the stream's own state in Redis, under a per-stream lock so two
   workers never blend frames of one stream into its background at the same time. A snapshot
   byte-for-byte equal to the previous one is "identical" without decoding it (such snapshots
   exist only with GLIMPSER_STORE_IDENTICAL_FRAMES; otherwise capture does not store them).
   (A perceptual hash is not used to skip detection: a small object moving in a large frame
   does not change a 64-bit hash, so it would hide real motion. It keys the AI cache instead.)
2. The AI description (ai.py), only when the snapshot changed and the stream asks for it (or a
   rule needs it), or when the stream's periodic description is due. Failures fail open: the
   snapshot records {"error": ...} and rules still raise their events, saying the AI failed.
3. Rules (rules.py) turn the observation into events.

Results are written with targeted UPDATEs, so an admin editing the stream meanwhile loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import redis

from glimpser import metrics, times
from glimpser.analysis import motion, rules, textchange
from glimpser.analysis.ai import AIClient, AIError, Answer, Description
from glimpser.analysis.schemas import AnalysisSettings, analysis_settings
from glimpser.config import Settings
from glimpser.db import write_transaction
from glimpser.media.storage import Storage, StorageError
from glimpser.media.thumbnails import ensure_thumbnail
from glimpser.models import Event, Snapshot, Stream

log = logging.getLogger(__name__)

# A stream's motion state is updated under a lock. Detection takes milliseconds, so the lock
# lives LOCK_SECONDS at most and a job waits LOCK_WAIT_SECONDS for it: a lock left behind by a
# job that died (e.g. Redis restarted with the lock saved in its RDB) must not hold up the
# worker, which also runs the captures, for a minute.
LOCK_SECONDS = 10
LOCK_WAIT_SECONDS = 2


@dataclass
class AnalysisOutcome:
    """What happened to one snapshot (the job's return value, and for tests)."""

    snapshot_id: int
    note: str = ""
    changed: bool = False
    score: float = 0.0
    described: bool = False
    ai_error: str = ""
    events: list[int] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)  # open events that matched again
    skipped: str = ""


def _previous_sha(snapshot: Snapshot) -> str | None:
    row = (
        Snapshot.select(Snapshot.sha256)
        .where(
            (Snapshot.stream == snapshot.stream_id)
            & (
                (Snapshot.captured_at < snapshot.captured_at)
                | ((Snapshot.captured_at == snapshot.captured_at) & (Snapshot.id < snapshot.id))
            )
        )
        .order_by(Snapshot.captured_at.desc(), Snapshot.id.desc())
        .first()
    )
    return row.sha256 if row else None


def _detect(
    stream: Stream,
    snapshot: Snapshot,
    jpeg: bytes,
    settings: AnalysisSettings,
    connection: redis.Redis,
    check_identical: bool,
) -> motion.DetectionResult:
    if check_identical and _previous_sha(snapshot) == snapshot.sha256:
        return motion.DetectionResult(0.0, 0.0, [], False, "identical")
    config = motion.DetectorConfig.for_stream(settings, stream.kind, float(stream.interval))
    last_key = f"glimpser:analysis:last:{stream.id}"
    stamp = snapshot.captured_at.timestamp()
    lock = connection.lock(
        f"glimpser:analysis:lock:{stream.id}",
        timeout=LOCK_SECONDS,
        blocking_timeout=LOCK_WAIT_SECONDS,
    )
    if not lock.acquire():
        # Another job holds the stream (stuck, very slow, or dead with its lock left behind):
        # compare with the stored background anyway, but leave the state to the holder.
        log.warning("analysis lock busy", extra={"stream_id": stream.id})
        try:
            return motion.detect(jpeg, motion.load_state(connection, stream.id), config)[0]
        except ValueError:
            return motion.DetectionResult(0.0, 0.0, [], False, "unreadable")
    try:
        state = motion.load_state(connection, stream.id)
        try:
            result, new_state = motion.detect(jpeg, state, config)
        except ValueError as exc:  # a stored file that is not a decodable JPEG
            log.warning(
                "snapshot not decodable", extra={"snapshot_id": snapshot.id, "error": str(exc)}
            )
            return motion.DetectionResult(0.0, 0.0, [], False, "unreadable")
        last = connection.get(last_key)
        # A snapshot analysed late (after a newer one) is compared, but must not rewind the
        # background to an older picture.
        if last is None or stamp >= float(last):
            motion.save_state(connection, stream.id, new_state)
            connection.set(last_key, stamp, ex=7 * 24 * 3600)
    finally:
        with contextlib.suppress(redis.exceptions.LockError):  # expired meanwhile
            lock.release()
    return result


def _periodic_due(stream: Stream, settings: AnalysisSettings, connection: redis.Redis) -> bool:
    """Is the stream's periodic description due? At most one try per period, successful or
    not: a failing or over-budget AI is not asked again with every snapshot."""
    minutes = settings.describe_every_minutes
    if minutes <= 0:
        return False
    if stream.ai_caption_at is not None and times.utcnow() - stream.ai_caption_at < timedelta(
        minutes=minutes
    ):
        return False
    return bool(connection.set(f"glimpser:ai:periodic:{stream.id}", "1", nx=True, ex=minutes * 60))


def _cache_key(snapshot: Snapshot, result: motion.DetectionResult | None) -> str:
    """The AI cache key: the perceptual hash, plus where the motion is.

    A small object moving in a large picture may leave the 64-bit perceptual hash unchanged,
    so the hash alone could serve the description of an empty scene for a frame with someone
    in it. The motion boxes (on a coarse 8×8 grid) tell such frames apart.
    """
    if result is None or not result.boxes:
        return snapshot.phash
    cells = sorted(
        {
            f"{int(x * 8)}{int(y * 8)}{int((x + w) * 8)}{int((y + h) * 8)}"
            for x, y, w, h in result.boxes
        }
    )
    return f"{snapshot.phash}:{'.'.join(cells)}"


def analyse_snapshot(
    snapshot_id: int,
    settings: Settings,
    connection: redis.Redis,
    storage: Storage,
    ai: AIClient | None,
) -> AnalysisOutcome:
    """Analyse one snapshot and raise the events its stream's rules ask for."""
    started = time.perf_counter()
    outcome = AnalysisOutcome(snapshot_id)
    snapshot = Snapshot.get_or_none(Snapshot.id == snapshot_id)
    if snapshot is None:
        outcome.skipped = "the snapshot no longer exists"
        return outcome
    stream = Stream.get_or_none(Stream.id == snapshot.stream_id)
    if stream is None:
        outcome.skipped = "the stream no longer exists"
        return outcome
    try:
        stream_settings = analysis_settings(stream.analysis)
    except ValueError as exc:
        log.warning("invalid analysis settings", extra={"stream_id": stream.id, "error": str(exc)})
        stream_settings = AnalysisSettings()
    try:
        jpeg = storage.get(snapshot.storage_key)
    except (StorageError, FileNotFoundError, OSError) as exc:
        # Deleted by retention before its turn came: nothing left to look at.
        outcome.skipped = f"the snapshot file is gone: {exc}"
        return outcome
    try:
        # Here, off the web process: the dashboard asks for it as soon as the snapshot shows.
        ensure_thumbnail(snapshot, storage, jpeg)
    except (StorageError, OSError, ValueError) as exc:
        log.warning("thumbnail not made", extra={"snapshot_id": snapshot.id, "error": str(exc)})

    result = (
        # Unless identical frames are stored, capture already skipped a frame equal to the
        # previous one: no need to look the previous snapshot up again for every snapshot.
        _detect(
            stream, snapshot, jpeg, stream_settings, connection, settings.store_identical_frames
        )
        if stream_settings.detect
        else None
    )
    if result is not None:
        result = textchange.judge_website(stream, snapshot, result)  # websites: text rules too
        outcome.note, outcome.changed, outcome.score = result.note, result.changed, result.score

    # Read and validated once: the same list decides the description and is evaluated below.
    applicable = rules.applicable_rules(stream)
    description: Description | None = None
    ai_error = ""
    wants_description = (
        result is not None
        and result.changed
        and (
            stream_settings.describe_on_change
            or any(rules.needs_description(spec.conditions) for _rule, spec in applicable)
        )
    ) or _periodic_due(stream, stream_settings, connection)
    cache_key = _cache_key(snapshot, result)
    if wants_description:
        if ai is None:
            pass  # AI not configured: nothing is described and nothing pretends to be
        else:
            try:
                description = ai.describe(
                    jpeg,
                    stream_id=stream.id,
                    prompt=stream_settings.describe_prompt,
                    phash=cache_key,
                    budget=stream_settings.daily_token_budget,
                )
            except AIError as exc:
                ai_error = str(exc)
    outcome.described, outcome.ai_error = description is not None, ai_error

    now = times.utcnow()
    values: dict = {"analysed_at": now}
    if result is not None:
        values.update(
            motion_score=result.score,
            changed_fraction=result.changed_fraction,
            changed=result.changed,
            boxes=result.boxes,
            analysis_note=result.note,
        )
    if description is not None:
        values["ai"] = description.as_dict()
    elif ai_error:
        values["ai"] = {"error": ai_error}
    with write_transaction():
        Snapshot.update(**values).where(Snapshot.id == snapshot.id).execute()
        if description is not None:
            # The newest description wins, whatever order the jobs finish in.
            caption = description.title or description.description
            Stream.update(ai_caption=caption[:500], ai_caption_at=snapshot.captured_at).where(
                (Stream.id == stream.id)
                & (Stream.ai_caption_at.is_null() | (Stream.ai_caption_at < snapshot.captured_at))
            ).execute()
    # The rules read what was just written: set it on the row in hand instead of reading it back.
    for name, value in values.items():
        setattr(snapshot, name, value)

    def ask(question: str) -> Answer:
        assert ai is not None
        return ai.ask(
            jpeg,
            question,
            stream_id=stream.id,
            phash=cache_key,
            budget=stream_settings.daily_token_budget,
        )

    observation = rules.Observation(
        stream=stream,
        snapshot=snapshot,
        description=description,
        ai_error=ai_error,
        ask=ask if ai is not None else None,
    )
    evaluation = rules.evaluate(observation, connection, applicable=applicable)
    events: list[Event] = evaluation.created
    outcome.events = [e.id for e in events]
    outcome.repeated = [e.id for e in evaluation.repeated]
    log.info(
        "analysed",
        extra={
            "stream_id": stream.id,
            "snapshot_id": snapshot.id,
            "note": outcome.note,
            "changed": outcome.changed,
            "described": outcome.described,
            "events": len(events),
        },
    )
    metrics.record_analysis(connection, stream.kind, time.perf_counter() - started)
    return outcome
