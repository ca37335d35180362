"""Prefix-cache hits reach OpenAI clients as usage.prompt_tokens_details.cached_tokens."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from up_process import running_cloud

from gpucloud_gateway.client import Client

pytestmark = pytest.mark.slow

ADMIN = ("admin@gpucloud.local", "admin123")
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
# Long enough to fill many 16-token KV blocks, so a repeat is served from the cache.
SYSTEM = " ".join(f"rule {i}: answer politely and cite the handbook." for i in range(120))


def test_a_repeated_system_prompt_reports_cached_prompt_tokens(tmp_path: Path) -> None:
    with running_cloud(tmp_path, "--gpus", "h100", "--sim-speed", "0") as cloud:
        with Client(cloud.base_url) as admin:
            admin.login(*ADMIN)
            key = admin.create_key("cache", use=False)["secret"]
        sdk = openai.OpenAI(base_url=cloud.openai_url, api_key=key, max_retries=0)
        usages = []
        for question in ("What is rule 3?", "And rule 7?"):
            answer = sdk.chat.completions.create(
                model=LLAMA,
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question},
                ],
                max_tokens=4,
            )
            assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
            usages.append(answer.usage)
        first, second = usages
        assert first.prompt_tokens_details is not None and second.prompt_tokens_details is not None
        assert first.prompt_tokens_details.cached_tokens == 0
        cached = second.prompt_tokens_details.cached_tokens
        assert cached is not None and 1000 < cached < second.prompt_tokens
        sdk.close()
