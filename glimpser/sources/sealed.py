"""Secrets for a test capture, kept out of Redis and the logs.

A test capture runs on a worker with the form's unsaved settings. RQ stores a job's arguments
in Redis (and so in redis.rdb) and logs its description, so the arguments must hold no
secret. The web process passes instead:

- the config without its secret fields (`dump_config(..., include_secrets=False)`);
- the stream id, when the form edits a saved stream: the worker reads the stored secrets from
  the database, and only if the form's URL still points where the stored one does
  (`schema_helpers.may_keep_secrets`), so a stored password never goes to a new host;
- secrets typed into the form, sealed (Fernet: encrypted and authenticated) with a key derived
  from GLIMPSER_SECRET_KEY, valid for a few minutes only.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from glimpser.schema_helpers import may_keep_secrets
from glimpser.sources.base import CaptureError

SEAL_TTL_SECONDS = 600  # longer than a test capture waits in the queue (ttl=120) and runs


def _fernet(secret_key: str) -> Fernet:
    digest = hashlib.sha256(b"glimpser test-capture secrets\0" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secrets: Mapping[str, str], secret_key: str) -> str:
    """Secrets as an encrypted, time-stamped token ("" when there are none)."""
    if not secrets:
        return ""
    return _fernet(secret_key).encrypt(json.dumps(dict(secrets)).encode()).decode()


def unseal(token: str, secret_key: str, ttl: int = SEAL_TTL_SECONDS) -> dict[str, str]:
    """The secrets in a token from `seal`; CaptureError if it is forged or too old."""
    if not token:
        return {}
    try:
        data = json.loads(_fernet(secret_key).decrypt(token.encode(), ttl=ttl))
    except (InvalidToken, ValueError):
        raise CaptureError("the test capture's settings expired; try again") from None
    return {str(k): str(v) for k, v in data.items()}


def typed_secrets(
    config: Mapping[str, Any], stored: Mapping[str, Any] | None, names: frozenset[str]
) -> dict[str, str]:
    """The secrets of a full config (secrets included) that the stored config does not supply:
    those typed into the form (or moved there from user:password@ in the URL)."""
    kept = stored if stored is not None and may_keep_secrets(stored, config) else {}
    return {
        name: str(config[name])
        for name in names
        if config.get(name) and config.get(name) != kept.get(name)
    }


def with_secrets(
    public: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    sealed: str,
    names: frozenset[str],
    secret_key: str,
) -> dict[str, Any]:
    """The config to capture with: the public fields, the stored secrets where they may be
    kept (same kind, same destination), and the sealed ones on top."""
    config = dict(public)
    if stored is not None and may_keep_secrets(stored, public):
        config.update({name: stored[name] for name in names if stored.get(name)})
    config.update(unseal(sealed, secret_key))
    return config
