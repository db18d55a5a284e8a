"""Shared fixtures: a real service process on free ports, a private redis-server."""

from __future__ import annotations

import pytest
from support import POLICIES, RedisProcess, free_port, start_service


def pytest_collection_modifyitems(items):
    """The personal-data sweep over every log of the run goes last, so it sees them all."""
    items.sort(key=lambda item: item.fspath.basename == "test_no_personal_data.py")


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    service = start_service(tmp_path_factory.mktemp("service"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def stub(server):
    return server.stub()


@pytest.fixture
def redis_server(tmp_path):
    redis = RedisProcess(free_port(), tmp_path)
    redis.start()
    yield redis
    redis.kill()


@pytest.fixture(scope="session")
def policies_dir():
    return POLICIES
