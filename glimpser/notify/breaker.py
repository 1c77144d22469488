"""A circuit breaker per channel, shared by every worker through Redis.

closed    → deliveries go out; consecutive failures are counted.
open      → after `threshold` failures in a row: nothing is sent until the cool-down has passed
            (deliveries wait and are retried later, their attempts are not used up).
half-open → after the cool-down exactly one worker may try (a Redis SET NX claim); success
            closes the circuit, failure opens it for another cool-down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

PREFIX = "glimpser:breaker:"


@dataclass(frozen=True)
class BreakerState:
    state: str  # closed, open, half-open
    failures: int
    open_until: float  # unix time; 0 when closed

    @property
    def retry_in(self) -> float:
        return max(0.0, self.open_until - time.time())


class CircuitBreaker:
    def __init__(
        self, connection: redis.Redis, channel_id: int, threshold: int, cooldown: float
    ) -> None:
        self.connection = connection
        self.key = f"{PREFIX}{channel_id}"
        self.trial_key = f"{self.key}:trial"
        self.threshold = threshold
        self.cooldown = cooldown

    def state(self) -> BreakerState:
        data = self.connection.hgetall(self.key)
        failures = int(data.get(b"failures", 0))
        open_until = float(data.get(b"open_until", 0))
        if not open_until:
            return BreakerState("closed", failures, 0.0)
        if time.time() < open_until:
            return BreakerState("open", failures, open_until)
        return BreakerState("half-open", failures, open_until)

    def allow(self) -> bool:
        """May a delivery go out now? In half-open state only one caller gets True."""
        current = self.state()
        if current.state == "closed":
            return True
        if current.state == "open":
            return False
        ttl = max(1, int(self.cooldown))
        return bool(self.connection.set(self.trial_key, "1", nx=True, ex=ttl))

    def trial_seconds_left(self) -> float:
        """How long another worker's half-open trial may still hold the circuit."""
        return float(max(self.connection.ttl(self.trial_key), 0))

    def record_success(self) -> None:
        self.connection.delete(self.key, self.trial_key)

    def record_failure(self) -> BreakerState:
        failures = self.connection.hincrby(self.key, "failures", 1)
        half_open_trial = self.connection.delete(self.trial_key) > 0
        if failures >= self.threshold or half_open_trial:
            self.connection.hset(self.key, "open_until", time.time() + self.cooldown)
        self.connection.expire(self.key, int(self.cooldown) + 7 * 24 * 3600)
        return self.state()

    def reset(self) -> None:
        self.record_success()
