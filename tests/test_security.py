"""Transport security against a real server: TLS, mutual TLS and the allow-list of callers.

Certificates are made here, per test session, with `cryptography`; no private key is committed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import HANGZHOU_NURSING_CASE, ROOT, START_TIMEOUT, free_port, make_id, metric_value, request

from service.api import eligibility_pb2 as pb
from service.api import eligibility_pb2_grpc as pb_grpc

ALLOWED_CN = "minzheng-gateway"  # on the allow-list by subject CN
ALLOWED_SAN = "spiffe://zj.gov.cn/disability-fed"  # on the allow-list by URI SAN only


# --- a throwaway PKI ---------------------------------------------------------------------------


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


@dataclass
class Issued:
    cert: Path
    key: Path

    def pair(self) -> tuple[bytes, bytes]:
        return self.key.read_bytes(), self.cert.read_bytes()


def _write(dir: Path, stem: str, cert: x509.Certificate, key) -> Issued:
    cert_path, key_path = dir / f"{stem}.crt", dir / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return Issued(cert_path, key_path)


class CA:
    def __init__(self, dir: Path, name: str):
        self.dir, self.key = dir, _key()
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.path = _write(dir, name, self.cert, self.key).cert

    def issue(
        self, stem: str, cn: str, *, server: bool = False, uris: tuple[str, ...] = (), more_cns: tuple[str, ...] = ()
    ) -> Issued:
        key = _key()
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in uris]
        if server:
            sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        subject = _name(cn)
        if more_cns:
            subject = x509.Name([*subject, *(x509.NameAttribute(NameOID.COMMON_NAME, c) for c in more_cns)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return _write(self.dir, stem, builder.sign(self.key, hashes.SHA256()), key)


@dataclass
class PKI:
    ca: CA
    server: Issued
    allowed: Issued  # CN on the allow-list
    allowed_by_san: Issued  # CN not on the list, URI SAN on it
    stranger: Issued  # same CA, not on the allow-list
    foreign: Issued  # another CA, CN on the allow-list
    two_cns_allowed_first: Issued  # same CA, CNs: the allowed one, then a stranger's
    two_cns_allowed_second: Issued  # same CA, CNs: a stranger's, then the allowed one


def make_pki(dir: Path) -> PKI:
    dir.mkdir(parents=True, exist_ok=True)
    ca, other = CA(dir, "test-ca"), CA(dir, "other-ca")
    return PKI(
        ca=ca,
        server=ca.issue("server", "localhost", server=True),
        allowed=ca.issue("allowed", ALLOWED_CN),
        allowed_by_san=ca.issue("allowed-san", "disability-federation", uris=(ALLOWED_SAN,)),
        stranger=ca.issue("stranger", "intruder-system"),
        foreign=other.issue("foreign", ALLOWED_CN),
        two_cns_allowed_first=ca.issue("two-cns-1", ALLOWED_CN, more_cns=("intruder-system",)),
        two_cns_allowed_second=ca.issue("two-cns-2", "intruder-system", more_cns=(ALLOWED_CN,)),
    )


def tls_channel(address: str, pki: PKI, client: Issued | None) -> grpc.Channel:
    key, cert = client.pair() if client else (None, None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.path.read_bytes(), private_key=key, certificate_chain=cert
    )
    return grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "localhost")])


def wait_tls_serving(address: str, pki: PKI, timeout: float = START_TIMEOUT) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with tls_channel(address, pki, pki.allowed) as channel:
            try:
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    raise TimeoutError(address)


def start_mtls_service(tmp: Path, pki: PKI, *extra: str, name: str = "mtls"):
    """A real service with mutual TLS. support.start_service waits with a plaintext health check, so
    the wait here is over TLS."""
    import os
    import signal as _signal

    from support import ServiceProcess

    port, metrics_port = free_port(), free_port()
    log_path = tmp / f"{name}-{port}.log"
    args = [
        "--tls-cert",
        str(pki.server.cert),
        "--tls-key",
        str(pki.server.key),
        "--tls-client-ca",
        str(pki.ca.path),
        "--allowed-callers",
        f"{ALLOWED_CN},{ALLOWED_SAN}",
        *extra,
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
                *args,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SUBSIDY_HMAC_KEY": "test-key"},
        )
    service = ServiceProcess(proc, port, metrics_port, log_path)
    try:
        wait_tls_serving(service.address, pki)
    except Exception as exc:
        service.stop(_signal.SIGKILL)
        raise RuntimeError(f"service did not start:\n{service.log_text()}") from exc
    return service


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    service = start_mtls_service(tmp_path_factory.mktemp("mtls"), pki)
    yield service
    assert service.stop() == 0


def evaluate(channel: grpc.Channel):
    return pb_grpc.EligibilityServiceStub(channel).Evaluate(request("2020-08-01", **HANGZHOU_NURSING_CASE), timeout=10)


def refused_code(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        evaluate(channel)
    return err.value.code()


# --- the tests -----------------------------------------------------------------------------------


def test_allowed_caller_by_common_name_is_served(mtls_server, pki):
    with tls_channel(mtls_server.address, pki, pki.allowed) as channel:
        reply = evaluate(channel)
    assert {d.program_id: d.monthly_amount.fen for d in reply.decisions}["disability_nursing_subsidy"] == 54000


def test_allowed_caller_by_san_is_served(mtls_server, pki):
    with tls_channel(mtls_server.address, pki, pki.allowed_by_san) as channel:
        assert evaluate(channel).policy_version


def test_caller_without_a_certificate_is_refused(mtls_server, pki):
    # The TLS handshake itself refuses: no HTTP/2 connection ever opens, so the client sees UNAVAILABLE
    # (the handshake failure) rather than an RPC status from the service.
    with tls_channel(mtls_server.address, pki, None) as channel:
        assert refused_code(channel) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_caller_with_a_certificate_from_another_ca_is_refused(mtls_server, pki):
    # Same CN as an allowed caller: the name alone must not let anyone in.
    with tls_channel(mtls_server.address, pki, pki.foreign) as channel:
        assert refused_code(channel) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_caller_not_on_the_allow_list_is_denied(mtls_server, pki):
    with tls_channel(mtls_server.address, pki, pki.stranger) as channel:
        assert refused_code(channel) == grpc.StatusCode.PERMISSION_DENIED
        stub = pb_grpc.EligibilityServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListPrograms(pb.ListProgramsRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            list(
                stub.EvaluateBatch(
                    iter([pb.EvaluateBatchRequest(ref="a", request=request("2020-08-01", **HANGZHOU_NURSING_CASE))]),
                    timeout=10,
                )
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Health stays open to any caller that passed the handshake (probes, load balancers).
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("which", ["two_cns_allowed_first", "two_cns_allowed_second"])
def test_certificate_with_several_common_names_is_refused(mtls_server, pki, which):
    """One CN on the list and one not: whichever comes first, the certificate names no one caller."""
    with tls_channel(mtls_server.address, pki, getattr(pki, which)) as channel:
        assert refused_code(channel) == grpc.StatusCode.PERMISSION_DENIED
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    lines = [json.loads(line) for line in mtls_server.log_text().splitlines() if line.startswith("{")]
    refusals = [line for line in lines if line.get("message") == "caller refused"]
    assert sorted(refusals[-1]["certificate_cn"]) == sorted([ALLOWED_CN, "intruder-system"])


def test_refused_caller_holds_no_slot(tmp_path, pki):
    """A caller off the allow-list opening more streams than there are slots and never finishing
    them (headers only, or a batch stream with no items): each is refused at once, holding nothing,
    and an allowed caller is served while the connection stays open."""
    import ssl

    from bench.hostile import RawConnection

    service = start_mtls_service(tmp_path, pki, "--max-concurrent-rpcs", "4", name="mtls-small")
    context = ssl.create_default_context(cafile=str(pki.ca.path))
    context.load_cert_chain(str(pki.stranger.cert), str(pki.stranger.key))
    hostile = RawConnection(service.address, tls=context)
    try:
        streams = [hostile.open("/subsidy.v1.EligibilityService/Evaluate") for _ in range(10)]
        streams += [hostile.open("/subsidy.v1.EligibilityService/EvaluateBatch") for _ in range(10)]
        assert hostile.wait_ended(streams, timeout=30)  # a hang guard: refused at once, in fact
        assert {hostile.ended[s].grpc_status for s in streams} == {grpc.StatusCode.PERMISSION_DENIED.value[0]}
        with tls_channel(service.address, pki, pki.allowed) as good:
            for _ in range(8):  # more calls than slots, one after the other
                assert evaluate(good).decisions
        assert not hostile.closed
    finally:
        hostile.close()
        assert service.stop() == 0


def test_plaintext_caller_is_refused(mtls_server):
    with grpc.insecure_channel(mtls_server.address) as channel:
        assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_caller_identity_in_logs_and_metrics_not_personal_data(mtls_server, pki):
    with tls_channel(mtls_server.address, pki, pki.allowed) as channel:
        reply = evaluate(channel)
    with tls_channel(mtls_server.address, pki, pki.stranger) as channel:
        refused_code(channel)
    lines = [json.loads(line) for line in mtls_server.log_text().splitlines() if line.startswith("{")]
    audits = [line for line in lines if line.get("name") == "audit" and line.get("request_hash") == reply.request_hash]
    assert audits and audits[-1]["caller"] == ALLOWED_CN
    assert audits[-1]["policy_version"] == reply.policy_version
    # The computed decision's line names the deciding rules; a cache hit's line points to it by hash.
    computed = [line for line in audits if not line["from_cache"]]
    assert "nursing.amount_fully_dependent" in computed[0]["programs"]["disability_nursing_subsidy"]["rules"]
    refusals = [line for line in lines if line.get("message") == "caller refused"]
    assert refusals and refusals[-1]["code"] == "PERMISSION_DENIED"
    assert "intruder-system" in refusals[-1]["certificate_cn"]
    # The request counter labels each call with its caller (a system's certificate name, never a
    # person): the allowed caller's call is counted under its name, the refused one as "other".
    requests = "subsidy_grpc_requests_total"
    assert metric_value(mtls_server, requests, method="Evaluate", code="OK", caller=ALLOWED_CN) >= 1
    assert metric_value(mtls_server, requests, method="Evaluate", code="PERMISSION_DENIED", caller="other") >= 1


def test_server_only_tls_with_the_caseworker_client(tmp_path, pki):
    """TLS without client certificates (callers anonymous), through the caseworker CLI's --tls flags."""
    import os

    from support import ServiceProcess

    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / f"tls-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--metrics-port",
                str(metrics_port),
                "--tls-cert",
                str(pki.server.cert),
                "--tls-key",
                str(pki.server.key),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SUBSIDY_HMAC_KEY": "test-key"},
        )
    service = ServiceProcess(proc, port, metrics_port, log_path)
    try:
        wait_tls_serving(service.address, pki)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "clients.caseworker",
                "check",
                "--address",
                f"localhost:{port}",
                "--tls",
                "--ca-cert",
                str(pki.ca.path),
                "--birth-date",
                "1970-05-05",
                "--region",
                "330102",
                "--household",
                "dibao",
                "--disability-grade",
                "1",
                "--disability-category",
                "physical",
                "--long-term-care-need",
                "--self-care",
                "fully_dependent",
                "--as-of",
                "2020-08-01",
                "--program",
                "disability_nursing_subsidy",
                "--id-number",
                make_id("1970-05-05"),
                "--json",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert "54000" in out.stdout
        with grpc.insecure_channel(service.address) as channel:
            assert refused_code(channel) == grpc.StatusCode.UNAVAILABLE
    finally:
        assert service.stop() == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tls-cert", "x.crt"], "--tls-cert and --tls-key go together"),
        (["--allowed-callers", "a"], "--allowed-callers needs --tls-client-ca"),
        (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"], "no such file"),
    ],
)
def test_bad_tls_configuration_is_refused_at_start(args, message):
    out = subprocess.run(
        [sys.executable, "-m", "service", "--metrics-port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and message in out.stderr


def test_plaintext_stays_the_default(server):
    """The README's run command: no TLS flags, plaintext, callers anonymous."""
    with grpc.insecure_channel(server.address) as channel:
        assert evaluate(channel).policy_version


def test_healthcheck_command_over_mutual_tls(mtls_server, pki):
    """The Dockerfile's HEALTHCHECK works when the service runs with mutual TLS."""
    base = [sys.executable, "-m", "service.healthcheck", "--address", mtls_server.address]
    ok = subprocess.run(
        base
        + [
            "--ca-cert",
            str(pki.ca.path),
            "--client-cert",
            str(pki.allowed.cert),
            "--client-key",
            str(pki.allowed.key),
            "--server-name",
            "localhost",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert ok.returncode == 0 and "SERVING" in ok.stdout, ok.stderr
    plaintext = subprocess.run(base + ["--timeout", "2"], capture_output=True, text=True, cwd=ROOT)
    assert plaintext.returncode == 1 and "unhealthy" in plaintext.stderr
