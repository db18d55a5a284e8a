"""The caseworker client against the service's own TLS and mutual TLS (`--tls-cert`, `--tls-key`,
`--tls-client-ca`, `--allowed-callers`), and each way a connection can be set up wrong, told apart
with what to fix. Certificates are made per test module (tests/test_security.py's throwaway PKI)."""

from __future__ import annotations

import pytest
from client_support import PERSON_FLAGS, no_library_noise, run
from test_security import CA, make_pki, start_mtls_service


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("client-pki"))


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory, pki):
    service = start_mtls_service(tmp_path_factory.mktemp("client-mtls"), pki)
    yield service
    service.stop()


def tls_args(pki, client, ca=None) -> list[str]:
    args = ["--tls", "--ca-cert", str(ca or pki.ca.path)]
    if client is not None:
        args += ["--client-cert", str(client.cert), "--client-key", str(client.key)]
    return args


def test_mutual_tls_decides(mtls_server, pki):
    result = run("check", "--address", mtls_server.address, *tls_args(pki, pki.allowed), *PERSON_FLAGS)
    assert result.returncode == 0, result.stderr
    assert "540.00" in result.stdout


def test_the_same_from_the_environment(mtls_server, pki):
    env = {
        "SUBSIDY_ADDRESS": mtls_server.address,
        "SUBSIDY_TLS": "1",
        "SUBSIDY_CA_CERT": str(pki.ca.path),
        "SUBSIDY_CLIENT_CERT": str(pki.allowed.cert),
        "SUBSIDY_CLIENT_KEY": str(pki.allowed.key),
    }
    result = run("check", *PERSON_FLAGS, env=env)
    assert result.returncode == 0, result.stderr


def test_connection_mistakes_are_told_apart(mtls_server, server, pki, tmp_path):
    stranger_ca = CA(tmp_path, "stranger-ca")
    cases = {
        # plaintext client, TLS service
        "plaintext": (["--address", mtls_server.address], 3, "要求 TLS 连接"),
        # TLS client, plaintext service
        "tls to plaintext": (["--address", server.address, *tls_args(pki, pki.allowed)], 3, "未启用 TLS"),
        # the service's certificate is not from the CA given
        "unknown CA": (
            ["--address", mtls_server.address, *tls_args(pki, pki.allowed, stranger_ca.path)],
            3,
            "--ca-cert",
        ),
        # no client certificate where the service requires one
        "no client cert": (["--address", mtls_server.address, *tls_args(pki, None)], 3, "要求客户端证书"),
        # a client certificate from a CA the service does not trust
        "foreign client cert": (["--address", mtls_server.address, *tls_args(pki, pki.foreign)], 3, "要求客户端证书"),
        # trusted, but not on the allow-list
        "not allowed": (["--address", mtls_server.address, *tls_args(pki, pki.stranger)], 3, "--allowed-callers"),
        # the key of another certificate
        "key mismatch": (
            [
                "--address",
                mtls_server.address,
                *tls_args(pki, None),
                "--client-cert",
                str(pki.allowed.cert),
                "--client-key",
                str(pki.stranger.key),
            ],
            2,
            "不是一对",
        ),
    }
    for name, (args, code, words) in cases.items():
        result = run("check", *args, *PERSON_FLAGS)
        assert result.returncode == code, (name, result.stderr)
        assert words in result.stderr, (name, result.stderr)
        assert no_library_noise(result.stderr), (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
