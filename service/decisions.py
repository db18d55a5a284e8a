"""The service core behind the gRPC layer: validate, look up the cache, decide, store.

It holds the policy set serving and swaps it atomically on reload: a request uses one engine
from start to end, so no reply mixes two policy versions.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from . import audit, convert, metrics, wire
from .api import eligibility_pb2 as pb
from .cache import Cache, cache_key
from .convert import ReplyBuilder
from .engine.decide import Engine, EngineDisagreement
from .engine.durable_backend import EngineClosed
from .policy.loader import load_policies
from .request import InvalidRequest, parse_evaluation_date, resolve_region, to_case, today

log = logging.getLogger(__name__)
HITS = metrics.CACHE_LOOKUPS.labels(result="hit")
FROM_CACHE = wire.boolean(pb.EvaluateResponse.DESCRIPTOR.fields_by_name["from_cache"].number, True)


class Reply(NamedTuple):  # a tuple: built on every call, a frozen dataclass costs several times more
    data: bytes  # a serialized EvaluateResponse
    policy_version: str
    request_hash: str
    audit: dict[str, Any] | None  # per program: outcome, amount, deciding rules; None for a cache hit


@dataclass(frozen=True)
class Serving:
    """What one policy version serves with: its engine and its reply builder, swapped together."""

    engine: Engine
    replies: ReplyBuilder

    @classmethod
    def load(cls, path: Path) -> Serving:
        engine = Engine(load_policies(path))
        return cls(engine, ReplyBuilder(engine.policy))


class PolicyHolder:
    """The policy version serving now; `reload` builds and checks a new one before swapping it in."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.serving = Serving.load(self.path)
        self._lock = threading.Lock()
        metrics.set_policy_version(self.engine.version)

    @property
    def engine(self) -> Engine:
        return self.serving.engine

    def reload(self) -> bool:
        with self._lock:
            try:
                new_serving = Serving.load(self.path)
            except Exception as exc:  # any failure keeps the old set serving
                metrics.RELOADS.labels(result="failure").inc()
                log.error(
                    "policy reload failed; the old version keeps serving",
                    extra={"policy_version": self.engine.version, "error": str(exc)},
                )
                return False
            old, new = self.engine, new_serving.engine
            self.serving = new_serving
            metrics.set_policy_version(new.version, old.version)
            metrics.RELOADS.labels(result="success").inc()
            log.info("policy reloaded", extra={"policy_version": new.version, "previous": old.version})
            old.close()
            return True


class DecisionService:
    def __init__(self, holder: PolicyHolder, cache: Cache, hmac_key: bytes):
        self.holder = holder
        self.cache = cache
        self._hmac = hmac.new(hmac_key, digestmod=hashlib.sha256)  # keyed once, copied per request

    def request_hash(self, request: pb.EvaluateRequest, on: str) -> str:
        """Keyed hash of the canonical request: audit and cache key without the ID number."""
        id_number = request.person.id_number
        if request.as_of == on and id_number == id_number.strip().upper():
            canonical = request  # already canonical, as nearly every request is: no copy
        else:
            canonical = pb.EvaluateRequest()
            canonical.CopyFrom(request)
            canonical.as_of = on
            canonical.person.id_number = id_number.strip().upper()
        mac = self._hmac.copy()  # measured: faster than the one-shot hmac.digest, which keys anew
        mac.update(canonical.SerializeToString(deterministic=True))
        return mac.hexdigest()

    def evaluate(self, request: pb.EvaluateRequest) -> pb.EvaluateResponse:
        return pb.EvaluateResponse.FromString(self.decide(request).data)

    def decide(self, request: pb.EvaluateRequest) -> Reply:
        """The serialized reply (the gRPC layer sends these bytes as they are) and its audit facts."""
        for _ in range(3):
            serving = self.holder.serving
            try:
                return self._decide(serving, request)
            except EngineClosed:
                continue  # a reload replaced the engine mid-request: decide again with the new one
        raise RuntimeError("policy engine kept changing during the request")

    def _decide(self, serving: Serving, request: pb.EvaluateRequest) -> Reply:
        engine = serving.engine
        # Only valid requests are ever stored, and validity depends on nothing but the request, the
        # date and the policy version (all in the key), so the cache is consulted before validating.
        # Today is read once: the key and the decision agree on the date even at midnight.
        now = None if request.as_of else today(engine.policy)
        digest = self.request_hash(request, now.isoformat() if now is not None else request.as_of)
        key = cache_key(engine.version, digest)
        cached = self.cache.get(key)
        if cached is not None:
            HITS.inc()
            return Reply(cached, engine.version, digest, None)
        case = to_case(request, engine.policy, now)
        metrics.child(metrics.CACHE_LOOKUPS, "miss").inc()  # counted for valid requests only
        started = time.perf_counter()
        try:
            decision = engine.evaluate(case.facts, case.region, case.on, case.programs)
        except EngineDisagreement:
            metrics.DISAGREEMENTS.inc()
            raise
        metrics.ENGINE_TIME.observe(time.perf_counter() - started)
        data = serving.replies.response(decision, digest)
        for d in decision.programs:
            metrics.child(metrics.DECISIONS, d.program.id, d.outcome).inc()
            if d.amount_fen:
                metrics.child(metrics.AMOUNT, d.program.id).inc(d.amount_fen)
        self.cache.set(key, data + FROM_CACHE)  # stored as a hit replies, so a hit copies nothing
        return Reply(data, engine.version, digest, audit.summary(decision))

    def list_programs(self, request: pb.ListProgramsRequest) -> pb.ListProgramsResponse:
        engine = self.holder.engine
        policy = engine.policy
        bad: list[tuple[str, str]] = []
        on = parse_evaluation_date(request.as_of, policy, "as_of", bad)
        region = resolve_region(request.region_code or policy.regions.province_code, policy, "region_code", bad, on)
        if bad:
            raise InvalidRequest(bad)
        assert on is not None and region is not None  # both parsed, as nothing was bad
        engine.check_date(on)
        reply = pb.ListProgramsResponse(policy_version=engine.version, as_of=on.isoformat())
        for p in (policy.programs[pid] for pid in engine.in_force(on)):
            reply.programs.append(
                pb.ProgramInfo(
                    program_id=p.id,
                    name_zh=p.name.zh,
                    name_en=p.name.en,
                    citation=p.citation,
                    rule_ids=[r.id for r in p.rules],
                )
            )
        in_force = engine.parameters_in_force(region, on)
        reply.parameters.extend(convert.parameter(v, policy) for v in in_force.values())
        return reply
