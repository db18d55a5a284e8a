"""The same gRPC service on the same server settings, with handlers that do nothing: the ceiling
the real service is measured against. `python -m bench.noop_server --port P [--threads N]`."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import cast

from service.api import eligibility_pb2 as pb
from service.cache import NoCache
from service.decisions import DecisionService, Reply
from service.server import ServerConfig, build_server


class NoopDecisions:
    """Answers every call with an empty reply (or prepared reply bytes), through the same servicer
    and server settings."""

    def __init__(self, reply: bytes = b""):
        self.reply = reply
        self.cache = NoCache()

    def decide(self, request) -> Reply:
        return Reply(self.reply or pb.EvaluateResponse().SerializeToString(), "noop", "", None)

    def list_programs(self, request):
        return pb.ListProgramsResponse()


async def serve(args: argparse.Namespace) -> None:
    reply = args.reply.read_bytes() if args.reply else b""
    server, _, _ = await build_server(
        cast(DecisionService, NoopDecisions(reply)),  # the same methods, answering without deciding
        ServerConfig(host="127.0.0.1", port=args.port, threads=args.threads, reuse_port=args.reuse_port),
    )
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--reuse-port", action="store_true")
    parser.add_argument("--reply", type=Path, help="a file of serialized EvaluateResponse bytes to answer with")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
