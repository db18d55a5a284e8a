"""Generated protobuf and gRPC stubs for subsidy.v1 (regenerate: python -m service.api.generate)."""
