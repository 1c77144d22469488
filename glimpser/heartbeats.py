"""Process heartbeats: which Glimpser processes run on which host, for Admin → System.

Every long-running process (web, worker, scheduler) keeps a small key in Redis,
`glimpser:process:<node>:<kind>:<pid>`, rewritten every BEAT_EVERY seconds by a daemon
thread and living BEAT_TTL seconds: a process that stops removes it, one that dies (kill -9,
a lost machine) disappears within BEAT_TTL. RQ's own worker entry says what a worker does
(queues, current job); this key says the process is alive now, because RQ rewrites its entry
only every few minutes while a worker waits for jobs. (The readers processes have their own,
richer heartbeat: glimpser.system_status.publish_readers.)

Each beat also stamps the host in the `glimpser:nodes` hash (node -> last time heard), so a
host whose processes all went silent is shown as gone, with when it was last heard, instead
of vanishing from the page; it is forgotten after NODE_FORGET_SECONDS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from glimpser import node

log = logging.getLogger(__name__)

PROCESS_KEY_PREFIX = "glimpser:process:"
NODES_KEY = "glimpser:nodes"
BEAT_EVERY = 5.0
BEAT_TTL = 15
# A host not heard from for a day is dropped from Admin → System (and from the hash).
NODE_FORGET_SECONDS = 24 * 3600


@dataclass
class ProcessBeat:
    node: str
    kind: str
    pid: int
    age: float  # seconds since the last beat


def process_key(node_name: str, kind: str, pid: int) -> str:
    return f"{PROCESS_KEY_PREFIX}{node_name}:{kind}:{pid}"


def stamp_node(connection: redis.Redis | redis.client.Pipeline, at: float | None = None) -> None:
    """Record that this host was heard from now (every heartbeat does it)."""
    connection.hset(NODES_KEY, node.name(), str(at or time.time()))


def beat(connection: redis.Redis, kind: str, pid: int | None = None) -> None:
    """One heartbeat of this process (its key, and the host's stamp), in one round trip."""
    now = time.time()
    name = node.name()
    pid = pid or os.getpid()
    pipe = connection.pipeline(transaction=False)
    pipe.set(
        process_key(name, kind, pid),
        json.dumps({"node": name, "kind": kind, "pid": pid, "at": now}),
        ex=BEAT_TTL,
    )
    stamp_node(pipe, now)
    pipe.execute()


def withdraw(connection: redis.Redis, kind: str, pid: int | None = None) -> None:
    """A process that stops cleanly removes its heartbeat (the host's stamp stays)."""
    connection.delete(process_key(node.name(), kind, pid or os.getpid()))


class Heartbeat:
    """Beats every BEAT_EVERY seconds in a daemon thread until stop().

    Redis errors are logged and retried on the next beat: a Redis restart must not end the
    process, and the heartbeat comes back with Redis."""

    def __init__(self, connection: redis.Redis, kind: str, every: float = BEAT_EVERY) -> None:
        self.connection = connection
        self.kind = kind
        self.every = every
        self.pid = os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"{self.kind}-heartbeat", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                beat(self.connection, self.kind, self.pid)
            except (redis.RedisError, OSError) as exc:
                log.warning("heartbeat not sent", extra={"kind": self.kind, "error": str(exc)})
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with contextlib.suppress(redis.RedisError, OSError):
            withdraw(self.connection, self.kind, self.pid)


def json_values(connection: redis.Redis, prefix: str) -> Iterator[tuple[str, dict]]:
    """(key, value) of every key under `prefix` holding a JSON object: one SCAN, one MGET.
    Keys that expired in between, or hold something else, are skipped."""
    keys = list(connection.scan_iter(match=f"{prefix}*", count=200))
    if not keys:
        return
    for key, raw in zip(keys, connection.mget(keys), strict=True):
        if raw is None:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if isinstance(data, dict):
            yield (key.decode() if isinstance(key, bytes) else str(key)), data


def processes(connection: redis.Redis) -> list[ProcessBeat]:
    """Every process whose heartbeat key still exists (heard from within BEAT_TTL)."""
    now = time.time()
    found = []
    for _key, data in json_values(connection, PROCESS_KEY_PREFIX):
        with contextlib.suppress(ValueError, KeyError, TypeError):
            found.append(
                ProcessBeat(
                    node=str(data["node"]),
                    kind=str(data["kind"]),
                    pid=int(data["pid"]),
                    age=max(0.0, now - float(data["at"])),
                )
            )
    return sorted(found, key=lambda p: (p.node, p.kind, p.pid))


def nodes(connection: redis.Redis) -> dict[str, float]:
    """node -> seconds since it was last heard from; hosts silent for NODE_FORGET_SECONDS
    are removed here."""
    now = time.time()
    found: dict[str, float] = {}
    stale = []
    for key, value in connection.hgetall(NODES_KEY).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        try:
            age = max(0.0, now - float(value))
        except (TypeError, ValueError):
            stale.append(name)
            continue
        if age > NODE_FORGET_SECONDS:
            stale.append(name)
        else:
            found[name] = age
    if stale:
        connection.hdel(NODES_KEY, *stale)
    return found
