"""Fixtures of the core tests: a real core on port 0 with the in-test identity."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from core_cluster import JOIN, OPS_TOKEN, Cluster, TestIdentity, running_cluster

from gpucloud_server.config import CoreSettings
from gpucloud_server.server import CoreServer


@pytest.fixture
def core_settings(tmp_path: Path) -> CoreSettings:
    return CoreSettings(
        grpc_port=0,
        data_dir=tmp_path,
        join_token=JOIN,
        ops_token=OPS_TOKEN,
        heartbeat_interval_s=0.2,
        missed_heartbeats=3,
        queue_capacity=100,
        shutdown_grace_s=1.0,
    )


@pytest.fixture
async def cluster(core_settings: CoreSettings) -> AsyncIterator[Cluster]:
    async with running_cluster(CoreServer(core_settings, TestIdentity())) as c:
        yield c
