"""A second real client: the official openai Node SDK against `gpucloud up`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from up_process import ADMIN_EMAIL, ADMIN_PASSWORD, running_cloud

from gpucloud_gateway.client import Client

pytestmark = pytest.mark.slow

NODE_DIR = Path(__file__).parent / "node"
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def _node_sdk() -> str:
    """The node binary, with the pinned SDK installed (npm ci on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "node and npm are needed for the openai Node SDK test (CI installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true", pytrace=False)
        pytest.skip(reason)
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    return node


def test_openai_node_sdk_completes_streams_and_maps_errors(tmp_path: Path) -> None:
    node = _node_sdk()
    with running_cloud(tmp_path) as cloud:
        with Client(cloud.base_url) as admin:
            admin.login(ADMIN_EMAIL, ADMIN_PASSWORD)
            secret = admin.create_key("node sdk")["secret"]
        env = {
            **os.environ,
            "GPUCLOUD_BASE_URL": cloud.openai_url,
            "GPUCLOUD_API_KEY": secret,
            "GPUCLOUD_MODEL": LLAMA,
        }
        run = subprocess.run(
            [node, "sdk_check.mjs"], cwd=NODE_DIR, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert LLAMA in seen["models"]
    assert seen["completion"]["id"].startswith("chatcmpl-")
    assert seen["completion"]["content"]
    assert seen["completion"]["usage"]["completion_tokens"] <= 16
    assert seen["stream"]["text"]
    assert seen["stream"]["usage"]["total_tokens"] > 0
    assert seen["unauthenticated"]["class"] == "AuthenticationError"
    assert seen["unauthenticated"]["status"] == 401
    assert seen["notFound"]["class"] == "NotFoundError"
    assert seen["notFound"]["requestId"]
