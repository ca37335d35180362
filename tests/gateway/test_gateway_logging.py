"""One structured log line per request, JSON off a terminal, never a secret."""

from __future__ import annotations

import io
import logging

import httpx
import orjson
import pytest
from gateway_fakes import GOOD_KEY, MODEL

from gpucloud_common.logs import ConsoleFormatter, JsonFormatter, setup_logging


async def test_each_request_logs_one_line_with_its_facts(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gpucloud.gateway.access")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    headers = {"authorization": f"Bearer {GOOD_KEY}", "x-request-id": "req-1"}
    await client.post("/v1/chat/completions", headers=headers, json=body)
    records = [r for r in caplog.records if r.name == "gpucloud.gateway.access"]
    assert len(records) == 1
    fields = records[0].__dict__
    assert fields["request_id"] == "req-1"
    assert fields["status"] == 200
    assert fields["path"] == "/v1/chat/completions"
    assert fields["model"] == MODEL
    assert fields["worker_id"] == "w-1"
    assert fields["queue_wait_ms"] == 7
    assert fields["ttft_ms"] == 12
    assert fields["completion_tokens"] == 3
    assert fields["total_ms"] > 0
    assert GOOD_KEY not in str(fields)


async def test_failed_requests_log_the_error_code(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gpucloud.gateway.access")
    body = {"model": "forbidden", "messages": [{"role": "user", "content": "Hi"}]}
    await client.post(
        "/v1/chat/completions", headers={"authorization": "Bearer sk-good"}, json=body
    )
    (record,) = [r for r in caplog.records if r.name == "gpucloud.gateway.access"]
    assert record.__dict__["status"] == 403
    assert record.__dict__["error"] == "PERMISSION_DENIED"


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("gpucloud.test", logging.INFO, __file__, 1, "request", None, None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_extra_fields() -> None:
    line = orjson.loads(JsonFormatter().format(_record(request_id="r1", status=200)))
    assert line["msg"] == "request"
    assert line["level"] == "info"
    assert line["request_id"] == "r1"
    assert line["status"] == 200


def test_console_lines_are_readable() -> None:
    text = ConsoleFormatter().format(_record(request_id="r1", path="/v1/models"))
    assert "request" in text
    assert "request_id=r1" in text
    assert "path=/v1/models" in text


def test_setup_picks_json_when_not_a_terminal() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging("info", "auto", stream)
        logging.getLogger("gpucloud.test").info("hello", extra={"x": 1})
        assert orjson.loads(stream.getvalue().splitlines()[-1])["x"] == 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
