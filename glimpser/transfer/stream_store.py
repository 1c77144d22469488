"""Saving a validated StreamSpec: the one place the form and the import write streams.

A saved stream is due at once (the scheduler's sweep, or "capture now", picks it up). The
status of an existing stream stays; only pausing or resuming changes its state.
"""

from __future__ import annotations

from typing import Any

from glimpser import times
from glimpser.models import Stream
from glimpser.sources.schemas import STREAM_FIELDS, StreamSpec, dump_config


def _values(spec: StreamSpec, kept_secrets: dict[str, str] | None) -> dict[str, Any]:
    now = times.utcnow()
    config = {**dump_config(spec.config, include_secrets=True), **(kept_secrets or {})}
    return {
        **{name: getattr(spec, name) for name in STREAM_FIELDS},
        "kind": spec.config.kind,
        "config": config,
        "analysis": spec.analysis.model_dump(mode="json"),
        "updated_at": now,
        "next_due_at": now,
    }


def create_stream(spec: StreamSpec, kept_secrets: dict[str, str] | None = None) -> Stream:
    return Stream.create(
        **_values(spec, kept_secrets), state="pending" if spec.enabled else "paused"
    )


def update_stream(
    stream: Stream, spec: StreamSpec, kept_secrets: dict[str, str] | None = None
) -> Stream:
    """Replace a stream's definition in place (same id, snapshots and events)."""
    values = _values(spec, kept_secrets)
    if not spec.enabled:
        values["state"] = "paused"
    elif stream.state == "paused":
        values["state"] = "pending"
    Stream.update(**values).where(Stream.id == stream.id).execute()
    return Stream.get_by_id(stream.id)
