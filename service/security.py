"""Transport security: TLS server credentials, mutual TLS and the allow-list of callers.

Callers are other government systems, each with a client certificate from the CA given by
`--tls-client-ca`. With a client CA the TLS handshake itself refuses a caller without a
certificate or with one from another CA (the connection never opens). An interceptor then checks
the verified certificate's subject common name and subject alternative names against
`--allowed-callers`: a caller not on the list gets PERMISSION_DENIED, and so does a certificate
with more than one subject CN (every CN is read from the certificate itself); a connection
without a verified identity gets UNAUTHENTICATED. A refused caller never reaches the service's
handlers, so it holds no decision slot. The health service answers any caller that passed the
handshake, so an orchestrator's probe needs a certificate but not a place on the list.

A caller's identity (the allow-list entry it matched, else its certificate's common name) goes
into metrics and logs; it names a system, never a person. Plaintext has the identity
`anonymous`, a refused certificate `other`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"  # plaintext, or TLS without client certificates
UNVERIFIED = "unverified"  # a TLS connection without a verified client certificate
# A verified certificate that is not on the allow-list, or is ambiguous (several subject CNs): the
# metrics label the README promises for anything unexpected.
DENIED = "other"
# Services any caller that passed the TLS handshake may use (probes, load balancers).
OPEN_SERVICES = ("/grpc.health.v1.Health/",)

# The context of a call on the server's event loop (the server is grpc.aio only).
Context = grpc.aio.ServicerContext[Any, Any]


class TlsConfigError(ValueError):
    pass


@dataclass(frozen=True)
class TlsConfig:
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    allowed_callers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def enabled(self) -> bool:
        return self.cert is not None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def check(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise TlsConfigError("--tls-cert and --tls-key go together")
        if self.client_ca is not None and not self.enabled:
            raise TlsConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        if self.allowed_callers and not self.mutual:
            raise TlsConfigError(
                "--allowed-callers needs --tls-client-ca: callers are identified by their certificates"
            )
        for path in (self.cert, self.key, self.client_ca):
            if path is not None and not Path(path).is_file():
                raise TlsConfigError(f"no such file: {path}")

    @classmethod
    def from_args(cls, cert: str | None, key: str | None, client_ca: str | None, allowed: str | None) -> TlsConfig:
        callers = tuple(c.strip() for c in (allowed or "").split(",") if c.strip())
        config = cls(
            Path(cert) if cert else None, Path(key) if key else None, Path(client_ca) if client_ca else None, callers
        )
        config.check()
        return config


def server_credentials(config: TlsConfig) -> grpc.ServerCredentials:
    """TLS credentials; with a client CA the handshake requires and verifies a client certificate."""
    assert config.key is not None and config.cert is not None  # TLS is on: check() saw both
    key, cert = Path(config.key).read_bytes(), Path(config.cert).read_bytes()
    client_ca = Path(config.client_ca).read_bytes() if config.client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _text(values: Iterable[bytes | str] | None) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values or ()]


def peer_names(context: Context) -> tuple[list[str], list[str]]:
    """The verified peer certificate's common names and subject alternative names (empty without one).

    gRPC's auth context names one common name only; the certificate itself (x509_pem_cert) gives
    them all, so that a certificate with several can be refused rather than judged on one of them."""
    # The stubs type each value as bytes; grpc gives a list of values (one per name) for each key.
    auth = cast(dict[str, list[bytes]], context.auth_context() or {})
    pem = auth.get("x509_pem_cert")
    common_names = subject_common_names(pem[0]) if pem else _text(auth.get("x509_common_name"))
    return common_names, _text(auth.get("x509_subject_alternative_name"))


@functools.lru_cache(maxsize=256)  # per certificate, not per call: callers keep their connections
def _common_names(pem: bytes) -> tuple[str, ...]:
    cert = x509.load_pem_x509_certificate(pem)
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


def subject_common_names(pem: bytes | str) -> list[str]:
    return list(_common_names(pem.encode() if isinstance(pem, str) else pem))


class Callers:
    """Who is calling, and may they. One instance serves the interceptor, metrics and logs."""

    def __init__(self, config: TlsConfig):
        self.config = config
        self.allowed = frozenset(config.allowed_callers)

    def identify(self, context: Context) -> tuple[str, bool]:
        """(caller identity, allowed?). The identity is bounded: an allow-list entry, a CN, or a fixed word."""
        if not self.config.mutual:
            return ANONYMOUS, True
        common_names, alt_names = peer_names(context)
        if not common_names and not alt_names:
            return UNVERIFIED, False
        if len(common_names) > 1:  # which one names the caller is a matter of opinion: none does
            return DENIED, False
        if not self.allowed:  # mutual TLS without a list: any certificate from the client CA
            return (common_names or alt_names)[0][:64], True
        for name in (*common_names, *alt_names):
            if name in self.allowed:
                return name, True
        return DENIED, False

    def caller(self, context: Context) -> str:
        return self.identify(context)[0]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses callers not on the allow-list before any handler runs."""

    def __init__(self, callers: Callers, on_refused: Callable[[str, str, grpc.StatusCode], None] | None = None):
        self.callers = callers
        self.on_refused = on_refused

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.callers.config.mutual or method.startswith(OPEN_SERVICES):
            return handler
        return _guarded(handler, self._check(method))

    def _check(self, method: str) -> Callable[[Context], Awaitable[None]]:
        async def check(context: Context) -> None:
            caller, allowed = self.callers.identify(context)
            if allowed:
                return
            code = grpc.StatusCode.UNAUTHENTICATED if caller == UNVERIFIED else grpc.StatusCode.PERMISSION_DENIED
            common_names, alt_names = peer_names(context)
            # A refused certificate's names are a system's, not a person's; bounded in length.
            log.warning(
                "caller refused",
                extra={
                    "method": method,
                    "code": code.name,
                    "certificate_cn": [n[:64] for n in common_names][:2],
                    "certificate_san": [n[:64] for n in alt_names][:4],
                },
            )
            if self.on_refused:
                self.on_refused(method, caller, code)
            await context.abort(
                code,
                "this caller is not allowed"
                if code == grpc.StatusCode.PERMISSION_DENIED
                else "a verified client certificate is required",
            )

        return check


_HANDLER_FACTORIES: dict[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any], check: Callable[[Context], Awaitable[None]]
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler (coroutines, as every handler this server guards), running `check` first."""
    kind = next(k for k in _HANDLER_FACTORIES if getattr(handler, k))
    inner = getattr(handler, kind)
    if handler.response_streaming:

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await check(context)
            async for reply in inner(request, context):
                yield reply

        return _HANDLER_FACTORIES[kind](stream, handler.request_deserializer, handler.response_serializer)

    async def unary(request: Any, context: Context) -> Any:
        await check(context)
        return await inner(request, context)

    return _HANDLER_FACTORIES[kind](unary, handler.request_deserializer, handler.response_serializer)
