"""Exit 0 when the service answers SERVING on the gRPC health service (the Dockerfile's HEALTHCHECK)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def _channel(args: argparse.Namespace) -> grpc.Channel:
    if not args.ca_cert:
        return grpc.insecure_channel(args.address)
    credentials = grpc.ssl_channel_credentials(_read(args.ca_cert), _read(args.client_key), _read(args.client_cert))
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.address, credentials, options=options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument(
        "--ca-cert",
        default=os.environ.get("SUBSIDY_HEALTH_CA_CERT"),
        help="TLS: the CA of the server's certificate (SUBSIDY_HEALTH_CA_CERT)",
    )
    parser.add_argument(
        "--client-cert",
        default=os.environ.get("SUBSIDY_HEALTH_CLIENT_CERT"),
        help="mutual TLS: a client certificate the server accepts (SUBSIDY_HEALTH_CLIENT_CERT)",
    )
    parser.add_argument(
        "--client-key", default=os.environ.get("SUBSIDY_HEALTH_CLIENT_KEY"), help="(SUBSIDY_HEALTH_CLIENT_KEY)"
    )
    parser.add_argument("--server-name", default=None, help="TLS name to verify, if not the address's host")
    args = parser.parse_args(argv)
    with _channel(args) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=args.timeout)
        except grpc.RpcError as err:
            print(f"unhealthy: {err.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
