"""Saving a validated StreamSpec: the one place the form, the import and the API write streams.

A saved stream is due at once (the scheduler's sweep, or "capture now", picks it up). The
status of an existing stream stays; only pausing or resuming changes its state.

Secrets are write-only: a submitted secret left blank keeps the stored one, but only while the
source still sends it where it did (`keep_stored_secrets`); the form and the API share that rule.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import peewee
from pydantic import SecretStr

from glimpser import times
from glimpser.models import Stream
from glimpser.schema_helpers import may_keep_secrets, secrets_to_reenter
from glimpser.sources.schemas import STREAM_FIELDS, StreamSpec, dump_config

NAME_TAKEN = "Another stream already has this name."


def name_taken(name: str, stream: Stream | None = None) -> bool:
    """Whether another stream than `stream` has this name (names are unique in any case)."""
    clash = Stream.select().where(peewee.fn.LOWER(Stream.name) == name.lower())
    if stream is not None:
        clash = clash.where(Stream.id != stream.id)
    return clash.exists()


def _blank(value: Any) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is None or value == ""


def keep_stored_secrets(
    stored: Mapping[str, Any] | None, submitted: Mapping[str, Any], names: Collection[str]
) -> tuple[dict[str, str], list[str]]:
    """For a submitted config (a dict with `kind`) replacing `stored` (None for a new stream):
    the stored secrets that its blank secret fields keep, and the names of the blank ones that
    must be typed again because the source now points elsewhere (schema_helpers)."""
    kept: dict[str, str] = {}
    if stored and may_keep_secrets(stored, submitted):
        kept = {n: str(stored[n]) for n in names if _blank(submitted.get(n)) and stored.get(n)}
    return kept, secrets_to_reenter(stored, {**submitted, **kept}, names)


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
