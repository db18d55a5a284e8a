"""The same gRPC service on the same server settings, with handlers that do nothing: the ceiling
the real service is measured against. `python -m bench.noop_server --port P [--threads N]`."""
from __future__ import annotations

import argparse
import signal
import threading

from service.api import eligibility_pb2 as pb
from service.server import ServerConfig, build_server


class NoopDecisions:
    """Answers every call with an empty reply, through the same servicer and server settings."""

    def decide(self, request):
        return pb.EvaluateResponse()

    def list_programs(self, request):
        return pb.ListProgramsResponse()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    server, _, _ = build_server(NoopDecisions(), ServerConfig(host="127.0.0.1", port=args.port, threads=args.threads,
                                                              reuse_port=args.reuse_port))
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
