"""One way to open a channel to the eligibility service, for the caseworker client and other systems.

A `dns:///host:port` target resolving to several replicas (on Kubernetes, the headless Service) is
balanced per call (`round_robin`), and UNAVAILABLE is retried by gRPC itself under the service
config below, so a replica that dies or drains costs a caller a retry, not an error. Every call
still needs its own deadline (`timeout=`): retries happen inside it, never past it.

    from clients.channel import TlsFiles, open_channel
    from service.api import eligibility_pb2 as pb, eligibility_pb2_grpc as pb_grpc

    tls = TlsFiles(  # mutual TLS; open_channel(target) alone for plaintext
        ca_cert=open("ca.crt", "rb").read(),
        client_cert=open("caller.crt", "rb").read(),
        client_key=open("caller.key", "rb").read(),
    )
    with open_channel("dns:///subsidy-headless.minzheng-subsidy.svc:50051", tls) as channel:
        stub = pb_grpc.EligibilityServiceStub(channel)
        reply = stub.Evaluate(pb.EvaluateRequest(...), timeout=2.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc

SERVICE = "subsidy.v1.EligibilityService"

# UNAVAILABLE: the service answers it when a replica drains or is gone, and a decision is a pure
# function of the request, so a retried Evaluate cannot be applied twice. CANCELLED too: a call
# that reaches a draining replica in the instant its transport stops is cancelled by the server
# (grpc.aio; seen once in about 2,300 calls of a rollout under load), while a call the caller
# cancels itself is never retried by gRPC. RESOURCE_EXHAUSTED is not retried here: it means
# "slow down", and an automatic retry would add to the load.
RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.05s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
}
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{"name": [{"service": SERVICE}], "retryPolicy": RETRY_POLICY}],
}
OPTIONS: tuple[tuple[str, object], ...] = (
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    # Re-resolve DNS soon after a replica goes away, so new replicas join the rotation.
    ("grpc.dns_min_time_between_resolutions_ms", 1000),
)


@dataclass(frozen=True)
class TlsFiles:
    """PEM bytes for TLS; no CA means the system's trusted roots, no key pair means no client cert."""

    ca_cert: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None


# gRPC shares connections between channels with the same arguments; a channel of its own connection
# lets several streams reach several worker processes behind one port (SO_REUSEPORT spreads
# connections, not streams).
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


def open_channel(target: str, tls: TlsFiles | None = None, *, own_connection: bool = False) -> grpc.Channel:
    """A channel to `target` (`host:port` or `dns:///host:port`) with balancing and retries;
    `own_connection` for one that shares no connection with other channels."""
    options = OPTIONS + OWN_CONNECTION if own_connection else OPTIONS
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    if (tls.client_cert is None) != (tls.client_key is None):
        raise ValueError("a client certificate and its key go together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_cert, private_key=tls.client_key, certificate_chain=tls.client_cert
    )
    return grpc.secure_channel(target, credentials, options=options)
