"""The parts around the code: stubs match the .proto, buf lint, hadolint, the README's commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib

from support import ROOT


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_committed_stubs_match_the_proto():
    result = run(sys.executable, "-m", "service.api.generate", "--check")
    assert result.returncode == 0, result.stderr


def test_buf_lint_is_clean():
    buf = ROOT / ".tools/node_modules/.bin/buf"
    assert buf.exists(), "make setup installs buf"
    result = run(str(buf), "lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    result = run(hadolint, "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_as_the_readme_does():
    """The Dockerfile's set-up is the README's: the same package install and the same start."""
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install .*--no-cache-dir \.", docker)
    assert 'CMD ["python", "-m", "service"]' in docker
    assert "USER " in docker and "HEALTHCHECK" in docker
    # Every package `pip install .` builds must be in the image's build context.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {setuptools.get("package-dir", {}).get(p, p.replace(".", "/")).split("/")[0] for p in setuptools["packages"]}
    for top in dirs:
        assert f"COPY {top} ./{top}" in docker, top
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci


def test_healthcheck_command_against_a_live_server(server):
    result = run(sys.executable, "-m", "service.healthcheck", "--address", server.address)
    assert result.returncode == 0, result.stderr


def test_pip_install_alone_gives_a_working_service(tmp_path):
    """`pip install .` (not editable) into a fresh venv runs with the bundled policies."""
    import signal

    from support import free_port, wait_serving

    venv = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    install = subprocess.run(
        [str(venv / "bin/pip"), "install", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "CPPFLAGS": "-O2"},
        cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    port = free_port()
    proc = subprocess.Popen(
        [str(venv / "bin/subsidy-service"), "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_serving(f"127.0.0.1:{port}", timeout=60, proc=proc)
        health = subprocess.run(
            [str(venv / "bin/python"), "-m", "service.healthcheck", "--address", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert health.returncode == 0 and "SERVING" in health.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
