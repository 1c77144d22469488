"""Stream leases: with several `glimpser readers` processes, each stream is read by one.

A lease is a Redis key per stream (`glimpser:reader-lease:<id>`) whose value is the owner id
of the readers process holding it (`hostname:pid:random`, so that a restarted process with
a recycled pid is a different owner). It is taken with SET NX PX (nobody else holds it),
renewed by its owner only (a compare-and-renew Lua script) every LEASE_RENEW_SECONDS, well
before LEASE_TTL_SECONDS run out, and deleted by its owner only (compare-and-delete) on a
clean stop. A process killed with -9 renews nothing: its leases expire after
LEASE_TTL_SECONDS and another process takes the streams on its next pass.

Renewal runs in a thread of its own (`Leases.start_keeper`), not in the readers' reconcile
loop, because a pass can take longer than the TTL (stopping readers waits for ffmpeg). The
renew script also re-creates a missing key for its owner: the key only goes missing when it
expired unclaimed or Redis restarted empty, and then nobody else holds the stream, so the
owner keeps reading instead of restarting every reader after a Redis restart. A key held by
someone else is never touched.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterable

import redis

from glimpser import node

log = logging.getLogger(__name__)

LEASE_KEY_PREFIX = "glimpser:reader-lease:"
LEASE_TTL_SECONDS = 6.0
LEASE_RENEW_SECONDS = 2.0  # three renewals per TTL: one slow or lost renewal costs nothing

# KEYS[1] lease key; ARGV[1] owner, ARGV[2] TTL in ms. 1: held by the owner (renewed, or
# re-created when missing), 0: someone else holds it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] lease key; ARGV[1] owner. 1: deleted, 0: not the owner's (left alone).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lease_key(stream_id: int) -> str:
    return f"{LEASE_KEY_PREFIX}{stream_id}"


def new_owner_id() -> str:
    """node:pid:random (glimpser.node: the hostname by default): readable on Admin → System,
    unique across restarts."""
    return f"{node.name()}:{os.getpid()}:{secrets.token_hex(4)}"


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


def acquire(
    connection: redis.Redis, stream_id: int, owner: str, ttl: float = LEASE_TTL_SECONDS
) -> bool:
    """Take the stream's lease if nobody holds it (SET NX PX); True when the owner holds it."""
    if connection.set(lease_key(stream_id), owner, nx=True, px=_ms(ttl)):
        return True
    return holder(connection, stream_id) == owner


def renew(
    connection: redis.Redis, stream_id: int, owner: str, ttl: float = LEASE_TTL_SECONDS
) -> bool:
    """Extend the lease if the owner holds it (or it is free); False when another holds it."""
    return bool(connection.eval(_RENEW, 1, lease_key(stream_id), owner, _ms(ttl)))


def renew_many(
    connection: redis.Redis, stream_ids: Iterable[int], owner: str, ttl: float = LEASE_TTL_SECONDS
) -> dict[int, bool]:
    """renew() for several streams in one round trip."""
    ids = list(stream_ids)
    if not ids:
        return {}
    pipe = connection.pipeline(transaction=False)
    for stream_id in ids:
        pipe.eval(_RENEW, 1, lease_key(stream_id), owner, _ms(ttl))
    return {stream_id: bool(ok) for stream_id, ok in zip(ids, pipe.execute(), strict=True)}


def release(connection: redis.Redis, stream_id: int, owner: str) -> bool:
    """Delete the lease if the owner holds it; never another process's lease."""
    return bool(connection.eval(_RELEASE, 1, lease_key(stream_id), owner))


def holder(connection: redis.Redis, stream_id: int) -> str | None:
    """The owner id holding the stream's lease, or None."""
    value = connection.get(lease_key(stream_id))
    return value.decode() if isinstance(value, bytes) else value


def holders(connection: redis.Redis, stream_ids: Iterable[int]) -> dict[int, str | None]:
    """holder() for several streams in one round trip (MGET)."""
    ids = list(stream_ids)
    if not ids:
        return {}
    values = connection.mget([lease_key(i) for i in ids])
    return {
        i: (v.decode() if isinstance(v, bytes) else v) for i, v in zip(ids, values, strict=True)
    }


class Leases:
    """The leases one readers process holds, kept alive by a renewal thread.

    The reconcile loop acquires and releases; the keeper renews. A lease the keeper finds held
    by another process is moved to `lost`, for the next pass to stop that stream's reader.
    One lock covers the held set and every Redis call on it, so that a renewal never
    re-creates a lease the loop has just released.
    """

    def __init__(
        self,
        connection: redis.Redis,
        owner: str | None = None,
        ttl: float = LEASE_TTL_SECONDS,
        renew_every: float = LEASE_RENEW_SECONDS,
    ) -> None:
        self.connection = connection
        self.owner = owner or new_owner_id()
        self.ttl = ttl
        self.renew_every = renew_every
        self._held: set[int] = set()
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)

    def take_lost(self) -> set[int]:
        """Streams whose lease another process holds now (each reported once)."""
        with self._lock:
            lost, self._lost = self._lost, set()
            return lost

    def try_acquire(self, stream_id: int) -> bool:
        with self._lock:
            if acquire(self.connection, stream_id, self.owner, self.ttl):
                self._held.add(stream_id)
                self._lost.discard(stream_id)
                return True
            return False

    def release(self, stream_id: int) -> None:
        with self._lock:
            self._held.discard(stream_id)
            release(self.connection, stream_id, self.owner)

    def release_all(self) -> None:
        with self._lock:
            for stream_id in sorted(self._held):
                release(self.connection, stream_id, self.owner)
            self._held.clear()

    def renew_all(self) -> set[int]:
        """Renew every held lease; returns the ones lost to another process."""
        with self._lock:
            results = renew_many(self.connection, self._held, self.owner, self.ttl)
            lost = {stream_id for stream_id, ok in results.items() if not ok}
            self._held -= lost
            self._lost |= lost
        for stream_id in sorted(lost):
            log.warning("stream lease lost", extra={"stream_id": stream_id, "owner": self.owner})
        return lost

    def start_keeper(self) -> None:
        """Renew in a thread every renew_every seconds until stop_keeper()."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._keep, name="lease-keeper", daemon=True)
        self._thread.start()

    def stop_keeper(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _keep(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.renew_all()
            except redis.RedisError as exc:
                # Unknown until Redis answers again: readers keep running (they cannot store
                # frames meanwhile anyway); the next renewal tells which leases are still ours.
                log.warning("stream leases not renewed", extra={"error": str(exc)})
