"""Decision cache: Redis when REDIS_URL is set, else an in-process LRU with the same behaviour.

Keys are `subsidy:decision:<policy version>:<HMAC of the canonical request>`: a new policy version
never reads an old decision, and no ID number is readable in Redis. Redis can never fail or slow
a request: a short socket timeout, no client-side retries, the error counted, and Redis left alone
for a back-off before one request probes it again; caching resumes by itself when it answers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import redis
from cachetools import TTLCache
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import metrics

T = TypeVar("T")

log = logging.getLogger(__name__)
PREFIX = "subsidy:decision"


def cache_key(policy_version: str, request_hash: str) -> str:
    return f"{PREFIX}:{policy_version}:{request_hash}"


class LocalCache:
    """In-process LRU with a TTL: the same keys and hit/miss behaviour as Redis, per process."""

    blocking = False  # never waits on I/O: the server calls it on its event loop

    def __init__(self, ttl: float, max_entries: int = 100_000):
        self._data: TTLCache[str, bytes] = TTLCache(maxsize=max_entries, ttl=ttl)
        self._lock = threading.Lock()
        metrics.set_cache_up("local", True)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = value

    def close(self) -> None:
        pass


class RedisCache:
    """Redis as a best-effort cache.

    Every error (refused, reset, timeout, any RedisError) is counted and turns the cache off for
    `backoff` seconds; after that, one request at a time probes Redis (the others go without the
    cache meanwhile), so a blackholed Redis costs at most one socket timeout per back-off period.
    """

    blocking = True  # waits on the network: the server calls it from a thread pool, off its event loop

    def __init__(self, url: str, ttl: float, timeout: float = 0.05, backoff: float = 1.0):
        self.ttl = max(1, int(ttl))
        self.backoff = backoff
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._down_until = 0.0
        self._down = False
        self._probe = threading.Lock()
        metrics.set_cache_up("redis", True)

    def _call(self, operation: str, fn: Callable[[], T]) -> T | None:
        """Run one Redis command, or skip it (None) while Redis is backed off or being probed."""
        if self._down:
            if time.monotonic() < self._down_until or not self._probe.acquire(blocking=False):
                return None
            try:
                return self._attempt(operation, fn)
            finally:
                self._probe.release()
        return self._attempt(operation, fn)

    def _attempt(self, operation: str, fn: Callable[[], T]) -> T | None:
        try:
            result = fn()
        except (redis.RedisError, OSError) as exc:
            self._failed(operation, exc)
            return None
        if self._down:
            self._down = False
            metrics.set_cache_up("redis", True)
            log.info("decision cache available again")
        return result

    def _failed(self, operation: str, exc: Exception) -> None:
        metrics.CACHE_ERRORS.labels(operation=operation).inc()
        if not self._down:
            log.warning(
                "decision cache unavailable; computing without it",
                extra={"error": type(exc).__name__, "retry_seconds": self.backoff},
            )
        self._down = True
        self._down_until = time.monotonic() + self.backoff
        metrics.set_cache_up("redis", False)

    def get(self, key: str) -> bytes | None:
        value = self._call("get", lambda: self._client.get(key))
        return value if isinstance(value, bytes) else None  # bytes: the client does not decode

    def set(self, key: str, value: bytes) -> None:
        self._call("set", lambda: self._client.set(key, value, ex=self.ttl))

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self._client.close()


class NoCache:
    """Caching off (a TTL of 0): every request is decided afresh."""

    blocking = False

    def __init__(self) -> None:
        metrics.set_cache_up("off", True)  # off by configuration is not an outage

    def get(self, key: str) -> bytes | None:
        return None

    def set(self, key: str, value: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class Cache(Protocol):
    """What the decision service needs of a cache; `blocking` says whether calls wait on the network."""

    blocking: bool

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes) -> None: ...

    def close(self) -> None: ...


def make_cache(redis_url: str | None, ttl: float) -> Cache:
    if ttl <= 0:
        return NoCache()
    return RedisCache(redis_url, ttl) if redis_url else LocalCache(ttl)
