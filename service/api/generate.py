"""Regenerate the committed gRPC stubs from proto/: `python -m service.api.generate [--check]`.

The stubs are committed so that `pip install .` needs no code generation; a test runs this with
--check to prove they match the .proto files.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
OUT = Path(__file__).resolve().parent
PROTOS = ["subsidy/v1/eligibility.proto"]
# protoc writes absolute imports mirroring the proto path; the stubs live inside this package.
_IMPORT = re.compile(r"^from subsidy\.v1 import (\w+_pb2) as", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    include = str(Path(protoc.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *PROTOS,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written = []
        for src in sorted(Path(tmp).rglob("*_pb2*.py*")):
            text = _IMPORT.sub(r"from . import \1 as", src.read_text())
            dest = out_dir / src.name
            dest.write_text(text)
            written.append(dest)
        return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed stubs differ")
    args = parser.parse_args(argv)
    if not args.check:
        for path in generate(OUT):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        stale = [p.name for p in generate(Path(tmp)) if (OUT / p.name).read_text() != p.read_text()]
    if stale:
        print("stale stubs: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
