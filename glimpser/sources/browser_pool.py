"""GLIMPSER_BROWSER_MAX_PER_HOST: how many Chromium instances the workers of one host run.

Chromium is the heaviest thing Glimpser runs. Each browser worker keeps one Chromium between
captures (glimpser.sources.website), so the cap is a Redis semaphore per host (node name,
glimpser.node): a sorted set `glimpser:browser-slots:<node>` whose members are the holders
(`node:pid:random`) scored by when their lease runs out. A worker takes a slot before it
launches Chromium and gives it back when it closes it. A keeper thread renews the slot every
SLOT_RENEW_SECONDS while Chromium runs; a worker that dies (kill -9, and its Chromium with
its Playwright driver) renews nothing, and its slot lapses after SLOT_TTL_SECONDS.

A capture that finds every slot taken waits (polling, as a registered waiter in
`glimpser:browser-waiters:<node>`) instead of failing. A holder that sees someone waiting
closes its Chromium after its capture and frees the slot; one nobody waits for keeps it.
A newcomer may not jump ahead of the waiters, so a busy worker cannot keep the slot forever.
The wait is bounded (SLOT_WAIT_SECONDS, counted into the browser job's timeout by
capture.scheduling): past it the capture fails with a message that names the cap.

0 (the default) means no cap: nothing is asked of Redis.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time

import redis

from glimpser import node

log = logging.getLogger(__name__)

SLOTS_PREFIX = "glimpser:browser-slots:"
WAITERS_PREFIX = "glimpser:browser-waiters:"
SLOT_TTL_SECONDS = 30.0
SLOT_RENEW_SECONDS = 10.0
WAITER_TTL_SECONDS = 5.0
POLL_SECONDS = 0.25
SLOT_WAIT_SECONDS = 60.0

# KEYS[1] slots, KEYS[2] waiters; ARGV[1] holder, ARGV[2] cap, ARGV[3] slot TTL ms,
# ARGV[4] waiter TTL ms. 1: the holder has a slot; 0: it waits (registered as a waiter).
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local ttl = tonumber(ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
  return 1
end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local waiting = redis.call('ZSCORE', KEYS[2], ARGV[1])
local ahead = redis.call('ZCARD', KEYS[2])
if waiting then ahead = 0 end
if free > ahead then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ttl * 2)
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) * 2)
return 0
"""

# KEYS[1] slots; ARGV[1] holder, ARGV[2] TTL ms. 1: renewed; 0: the slot had lapsed (lost).
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
redis.call('ZREM', KEYS[1], ARGV[1])
return 0
"""

# KEYS[1] waiters; ARGV[1] holder. How many others wait now.
_OTHERS_WAITING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then n = n - 1 end
return n
"""


class NoSlot(Exception):
    """No Chromium slot became free on this host within the wait."""


def slots_key(node_name: str) -> str:
    return f"{SLOTS_PREFIX}{node_name}"


def waiters_key(node_name: str) -> str:
    return f"{WAITERS_PREFIX}{node_name}"


def holders(connection: redis.Redis, node_name: str) -> list[str]:
    """Who holds a Chromium slot on this host now (lapsed leases left out)."""
    now_ms = int(time.time() * 1000)
    values = connection.zrangebyscore(slots_key(node_name), now_ms, "+inf")
    return sorted(v.decode() if isinstance(v, bytes) else str(v) for v in values)


class BrowserPool:
    """This worker's side of the per-host semaphore: one slot at most, for its one Chromium."""

    def __init__(
        self,
        connection: redis.Redis,
        cap: int,
        node_name: str | None = None,
        ttl: float = SLOT_TTL_SECONDS,
        renew_every: float = SLOT_RENEW_SECONDS,
    ) -> None:
        self.connection = connection
        self.cap = cap
        self.node = node_name or node.name()
        self.holder = f"{self.node}:{os.getpid()}:{secrets.token_hex(4)}"
        self.ttl = ttl
        self.renew_every = renew_every
        self._held = False
        self._lock = threading.Lock()
        # One stop event per keeper thread: a slot released and taken again at once gets a
        # fresh keeper, never the old one that is about to stop.
        self._stop: threading.Event | None = None

    @property
    def held(self) -> bool:
        return self._held

    def _try(self) -> bool:
        return bool(
            self.connection.eval(
                _ACQUIRE,
                2,
                slots_key(self.node),
                waiters_key(self.node),
                self.holder,
                self.cap,
                int(self.ttl * 1000),
                int(WAITER_TTL_SECONDS * 1000),
            )
        )

    def acquire(self, wait: float = SLOT_WAIT_SECONDS) -> None:
        """Take a slot, waiting up to `wait` seconds for one; raises NoSlot past it."""
        with self._lock:
            if self._held:
                return
        deadline = time.monotonic() + wait
        logged = False
        while not self._try():
            if not logged:
                log.info("waiting for a Chromium slot", extra={"node": self.node, "cap": self.cap})
                logged = True
            if time.monotonic() > deadline:
                self.connection.zrem(waiters_key(self.node), self.holder)
                raise NoSlot(
                    f"no Chromium slot free on {self.node} within {wait:g} s "
                    f"(GLIMPSER_BROWSER_MAX_PER_HOST={self.cap})"
                )
            time.sleep(POLL_SECONDS)
        with self._lock:
            self._held = True
        self._start_keeper()

    def others_waiting(self) -> int:
        """How many other workers of this host wait for a slot."""
        return int(self.connection.eval(_OTHERS_WAITING, 1, waiters_key(self.node), self.holder))

    def release(self) -> None:
        """Give the slot back (after Chromium is closed)."""
        with self._lock:
            was_held, self._held = self._held, False
            stop, self._stop = self._stop, None
        if stop is not None:
            stop.set()
        if was_held:
            try:
                self.connection.zrem(slots_key(self.node), self.holder)
            except (redis.RedisError, OSError) as exc:  # it lapses by itself
                log.warning("Chromium slot not released", extra={"error": str(exc)})

    def _start_keeper(self) -> None:
        with self._lock:
            if self._stop is not None:
                return  # a keeper runs for this slot already
            self._stop = stop = threading.Event()
        threading.Thread(target=self._keep, args=(stop,), name="browser-slot", daemon=True).start()

    def _keep(self, stop: threading.Event) -> None:
        while not stop.wait(self.renew_every):
            with self._lock:
                if not self._held or stop is not self._stop:
                    return
                try:
                    ok = self.connection.eval(
                        _RENEW, 1, slots_key(self.node), self.holder, int(self.ttl * 1000)
                    )
                except (redis.RedisError, OSError) as exc:
                    log.warning("Chromium slot not renewed", extra={"error": str(exc)})
                    continue
                if not ok:
                    # Lapsed (Redis was away longer than the TTL): take it again next capture.
                    log.warning("Chromium slot lapsed", extra={"node": self.node})
                    self._held = False
                    self._stop = None
                    return


_pool: BrowserPool | None = None


def configure(connection: redis.Redis | None, cap: int) -> None:
    """Called by `glimpser worker` for a worker that serves the browser queue (0: no cap)."""
    global _pool
    _pool = BrowserPool(connection, cap) if connection is not None and cap > 0 else None


def current() -> BrowserPool | None:
    """This worker's pool, or None when no cap is set."""
    return _pool
