"""Decision cache: Redis when REDIS_URL is set, else an in-process LRU with the same behaviour.

Keys are `subsidy:decision:<policy version>:<HMAC of the canonical request>`: a new policy version
never reads an old decision, and no ID number is readable in Redis. Redis can never fail or slow
a request: a short socket timeout, the error counted, and Redis left alone for a back-off before
it is tried again; caching resumes by itself when it answers.
"""
from __future__ import annotations

import logging
import threading
import time

import redis
from cachetools import TTLCache

from . import metrics

log = logging.getLogger(__name__)
PREFIX = "subsidy:decision"


def cache_key(policy_version: str, request_hash: str) -> str:
    return f"{PREFIX}:{policy_version}:{request_hash}"


class LocalCache:
    def __init__(self, ttl: float, max_entries: int = 100_000):
        self._data: TTLCache = TTLCache(maxsize=max_entries, ttl=ttl)
        self._lock = threading.Lock()
        metrics.CACHE_UP.set(1)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = value

    def close(self) -> None:
        pass


class RedisCache:
    def __init__(self, url: str, ttl: float, timeout: float = 0.05, backoff: float = 1.0):
        self.ttl = max(1, int(ttl))
        self.backoff = backoff
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry_on_timeout=False)
        self._down_until = 0.0
        metrics.CACHE_UP.set(1)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        metrics.CACHE_ERRORS.labels(operation=operation).inc()
        metrics.CACHE_UP.set(0)
        if self._available():
            log.warning("decision cache unavailable; computing without it", extra={"error": type(exc).__name__})
        self._down_until = time.monotonic() + self.backoff

    def get(self, key: str) -> bytes | None:
        if not self._available():
            return None
        try:
            value = self._client.get(key)
        except redis.RedisError as exc:
            self._failed("get", exc)
            return None
        metrics.CACHE_UP.set(1)
        return value

    def set(self, key: str, value: bytes) -> None:
        if not self._available():
            return
        try:
            self._client.set(key, value, ex=self.ttl)
        except redis.RedisError as exc:
            self._failed("set", exc)

    def close(self) -> None:
        self._client.close()


class NoCache:
    """Caching off (a TTL of 0): every request is decided afresh."""

    def get(self, key: str) -> bytes | None:
        return None

    def set(self, key: str, value: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def make_cache(redis_url: str | None, ttl: float):
    if ttl <= 0:
        return NoCache()
    return RedisCache(redis_url, ttl) if redis_url else LocalCache(ttl)
