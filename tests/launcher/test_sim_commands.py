"""`gpucloud sim profile` and `gpucloud plan` as a user runs them: output, errors, usage trace."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpucloud_launcher.cli import main
from gpucloud_server.config import CoreSettings
from gpucloud_server.identity.storage import open_database
from gpucloud_server.identity.storage.tables import usage

LLAMA_8B = "meta-llama/Meta-Llama-3-8B-Instruct"
PROFILE = ["sim", "profile", "--gpu", "h100", "--model", LLAMA_8B]
SUMMARY_KEYS = {
    "ttft_ms_p50", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99", "e2e_ms_p50",
    "output_tokens_per_s", "requests_per_s",
}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_usage_lists_sim_and_plan(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--help")
    assert "\n  sim " in out
    assert "\n  plan " in out


def test_sim_profile_json_has_the_summary_and_every_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(
        capsys, *PROFILE, "--prompt-tokens", "512", "--output-tokens", "128",
        "--concurrency", "8", "--requests", "24", "--json",
    )  # fmt: skip
    assert (status, err) == (0, "")
    document = json.loads(out)
    assert set(document) == {"summary", "requests"}
    assert set(document["summary"]) == SUMMARY_KEYS
    assert len(document["requests"]) == 24
    assert all(set(r) == {"ttft_ms", "tpot_ms", "e2e_ms"} for r in document["requests"])
    assert document["summary"]["ttft_ms_p50"] <= document["summary"]["ttft_ms_p99"]
    assert document["summary"]["output_tokens_per_s"] > 0


def test_sim_profile_open_loop_on_two_gpus_in_fp8(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, *PROFILE, "--rate", "5", "--requests", "20", "--gpu-count", "2",
        "--precision", "fp8", "--json",
    )  # fmt: skip
    assert status == 0
    assert len(json.loads(out)["requests"]) == 20


def test_sim_profile_prints_a_readable_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, *PROFILE, "--concurrency", "8", "--requests", "16")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"{LLAMA_8B} (bf16) on 1 x NVIDIA H100 80GB SXM"
    assert "16 requests, 512 prompt / 128 output tokens, 8 in flight" in out
    for label in ("TTFT (ms)", "TPOT (ms)", "E2E (ms)", "output tokens/s", "requests/s"):
        assert any(line.startswith(label) for line in lines), label


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpu", "tpu9"], "unknown GPU 'tpu9'"),
        (["--model", "gpt-5"], "unknown model 'gpt-5'"),
        (["--gpu", "a100", "--precision", "fp8"], "no FP8"),
        (["--rate", "2", "--concurrency", "4"], "not both"),
        (["--gpu", "rtx4090", "--model", "Llama-3.1-70B-Instruct"], "holds 0 tokens"),
        (["--requests", "0"], "must be > 0"),
        (["--rate", "fast"], "is not a number"),
        (["--precision", "int4"], "int4"),
        (["--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_sim_profile_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "sim", "profile", *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("gpucloud sim profile: error: ")
    assert message in err


def test_the_installed_command_refuses_without_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpucloud_launcher.cli", "sim", "profile", "--gpu", "a100",
         "--precision", "fp8"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_plan_json_gives_the_cheapest_fleet_and_the_one_just_too_small(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(
        capsys, "plan", "--model", LLAMA_8B, "--rate", "60", "--gpus", "h100",
        "--gpu-counts", "1", "--ttft-p99-ms", "500", "--tpot-p99-ms", "50", "--json",
    )  # fmt: skip
    assert status == 0
    pool = json.loads(out)["pools"][0]
    best, smaller = pool["best"], pool["smaller"]
    assert best["meets_slo"] is True
    assert smaller["meets_slo"] is False
    assert smaller["gpus"] == best["gpus"] - 1
    assert best["summary"]["ttft_ms_p99"] <= 500
    assert best["summary"]["tpot_ms_p99"] <= 50


def test_plan_prints_a_readable_table_with_price_overrides(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(
        capsys, "plan", "--model", "Meta-Llama-3-8B-Instruct", "--rate", "10",
        "--gpus", "h100,a100", "--price", "h100=0.5",
    )  # fmt: skip
    assert status == 0
    assert "$/GPU-hour: h100 $0.5, a100 $1.79" in out
    assert "  best:    1 x h100, 1 GPU, $0.50/hour" in out
    assert "headroom: meets the SLOs up to" in out
    assert "total: $0.50/hour" in out


def test_plan_without_a_fleet_that_meets_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "plan", "--model", LLAMA_8B, "--tpot-p99-ms", "1")
    assert status == 1
    assert "no fleet meets the SLOs" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "a,b"], "unknown model 'a'"),
        (["--model", f"{LLAMA_8B},Qwen2.5-7B-Instruct", "--rate", "1,2,3"], "one per model"),
        (["--price", "h100"], "GPU=DOLLARS_PER_HOUR"),
        (["--gpus", "tpu9"], "unknown GPU"),
        (["--from-usage", "--data-dir", "/nonexistent/gpucloud"], "no usage database"),
    ],
)
def test_plan_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "plan", *argv)
    assert status == 2
    assert err.count("\n") == 1
    assert message in err


def _record(data_dir: Path, rows: list[dict[str, object]]) -> None:
    async def fill() -> None:
        db = open_database(CoreSettings(data_dir=data_dir))
        try:
            await db.migrate()
            async with db.write() as conn:
                await conn.execute(usage.insert(), rows)
        finally:
            await db.close()

    asyncio.run(fill())


def _task(i: int, model: str, created_ms: int, prompt: int, completion: int) -> dict[str, object]:
    return {
        "task_id": f"task-{i}", "key_id": "key", "user_id": "user", "model": model,
        "worker_id": "w", "gpu": "NVIDIA H100 80GB SXM", "prompt_tokens": prompt,
        "completion_tokens": completion, "queue_wait_ms": 0, "ttft_ms": 50, "total_ms": 900,
        "outcome": "ok", "error_code": "", "created_ms": created_ms,
        "finished_ms": created_ms + 900,
    }  # fmt: skip


def test_plan_from_usage_replays_the_recorded_rate_and_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = 1_700_000_000_000
    # 201 Llama requests over 100 s (2/s), alternating sizes; 3 of a model the sim lacks.
    rows = [
        _task(i, LLAMA_8B, start + i * 500, 300 if i % 2 else 700, 50 if i % 2 else 150)
        for i in range(201)
    ]
    rows += [_task(1000 + i, "acme/secret-model", start + i, 10, 10) for i in range(3)]
    _record(tmp_path, rows)

    status, out, err = run(capsys, "plan", "--from-usage", "--data-dir", str(tmp_path), "--json")

    assert status == 0
    assert "skipping 'acme/secret-model'" in err
    (pool,) = json.loads(out)["pools"]
    assert pool["model"] == LLAMA_8B
    assert pool["rate_per_s"] == pytest.approx(2.0)
    assert pool["recorded_requests"] == 201
    assert pool["prompt_tokens"]["mean"] == pytest.approx((101 * 700 + 100 * 300) / 201, abs=0.1)
    assert pool["best"]["meets_slo"] is True


def test_plan_from_usage_filters_by_model_and_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Recorded in 2023: the last hour holds none of them.
    _record(tmp_path, [_task(i, LLAMA_8B, 1_700_000_000_000 + i * 1000, 100, 20) for i in range(5)])
    status, _, err = run(
        capsys, "plan", "--from-usage", "--data-dir", str(tmp_path), "--since-hours", "1",
    )  # fmt: skip
    assert status == 2
    assert "no finished tasks" in err
    status, _, err = run(
        capsys, "plan", "--from-usage", "--data-dir", str(tmp_path),
        "--model", "Qwen2.5-7B-Instruct",
    )  # fmt: skip
    assert status == 2
    assert "no finished tasks" in err
