"""Load generators of the gateway benchmark: wrk for plain requests, a small SSE client for streams.

wrk (Debian: `apt-get install -y wrk`) POSTs the body with bench/chat.lua, whose done() hook
prints the figures as JSON. The SSE client keeps one HTTP/1.1 connection per concurrent
stream and counts the chunks that carry content.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from procs import cpu_percent, percentile, sample

LUA = Path(__file__).resolve().parent / "chat.lua"
MARKER = "WRK_JSON "


def wrk(
    url: str, keys: Sequence[str], body: bytes, concurrency: int, seconds: float
) -> dict[str, Any]:
    """Requests/s and latency percentiles (ms) of `concurrency` connections for `seconds`;
    each request uses the next of `keys` (none: no Authorization header)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    command = [
        "wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(LUA), url, "--", ",".join(keys) or "-", body.decode(),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next((x for x in out.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    raw = json.loads(line[len(MARKER) :])
    latency = raw["latency_us"]
    errors = raw["errors"]
    return {
        "requests_per_second": raw["requests"] / (raw["duration_us"] / 1e6),
        "requests": raw["requests"],
        "p50_ms": latency["p50"] / 1000,
        "p90_ms": latency["p90"] / 1000,
        "p99_ms": latency["p99"] / 1000,
        "mean_ms": latency["mean"] / 1000,
        "max_ms": latency["max"] / 1000,
        "non_2xx": errors["status"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    }


@dataclass
class StreamTally:
    streams: int = 0
    chunks: int = 0
    errors: int = 0


class HttpError(Exception):
    """The server answered with a status other than 200."""


class SseConnection:
    """One keep-alive HTTP/1.1 connection that POSTs a streaming request and parses its SSE."""

    def __init__(self, url: str, key: str | None, body: bytes) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        headers = [
            f"POST {parts.path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Content-Type: application/json",
            "Accept: text/event-stream",
            f"Content-Length: {len(body)}",
        ]
        if key:
            headers.append(f"Authorization: Bearer {key}")
        self.request = ("\r\n".join(headers) + "\r\n\r\n").encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def stream(self, ttft_ms: list[float]) -> int:
        """Sends the request once; the number of content chunks received."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        started = time.perf_counter()
        self.writer.write(self.request)
        status, headers = await self._head(self.reader)
        sse = SseCounter()
        first_at: float | None = None
        async for data in self._body(self.reader, headers):
            sse.feed(data)
            if first_at is None and sse.chunks:
                first_at = time.perf_counter()
        if headers.get("connection") == "close":
            await self.close()
        if status != 200:
            raise HttpError(status)
        if first_at is not None:
            ttft_ms.append((first_at - started) * 1000)
        return sse.chunks

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        return int(status_line.split()[1]), headers

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
        if headers.get("transfer-encoding") == "chunked":
            while size := int((await reader.readline()).split(b";")[0], 16):
                yield await reader.readexactly(size)
                await reader.readexactly(2)
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
        elif "content-length" in headers:
            yield await reader.readexactly(int(headers["content-length"]))
        else:
            while data := await reader.read(65536):
                yield data
            headers["connection"] = "close"


class SseCounter:
    """Splits SSE events and counts the chunks whose delta carries content."""

    def __init__(self) -> None:
        self._buffer = b""
        self.chunks = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data.replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                if line.startswith(b"data:") and (payload := line[5:].strip()) != b"[DONE]":
                    self.chunks += _content_chunks(orjson.loads(payload))


def _content_chunks(chunk: dict[str, Any]) -> int:
    return sum(1 for c in chunk.get("choices") or () if (c.get("delta") or {}).get("content"))


async def _streams(
    url: str, keys: Sequence[str], body: bytes, concurrency: int, seconds: float
) -> dict[str, Any]:
    tally = StreamTally()
    ttft_ms: list[float] = []
    end = time.monotonic() + seconds

    async def client(key: str | None) -> None:
        connection = SseConnection(url, key, body)
        try:
            while time.monotonic() < end:
                try:
                    chunks = await connection.stream(ttft_ms)  # not `+= await`: it races
                    tally.chunks += chunks
                    tally.streams += 1
                except (HttpError, OSError, ValueError, asyncio.IncompleteReadError):
                    tally.errors += 1
                    await connection.close()
        finally:
            await connection.close()

    before = sample(os.getpid())
    started = time.monotonic()
    await asyncio.gather(
        *(client(keys[i % len(keys)] if keys else None) for i in range(concurrency))
    )
    elapsed = time.monotonic() - started
    return {
        "chunks": tally.chunks,
        "streams": tally.streams,
        "chunks_per_second": tally.chunks / elapsed,
        "streams_per_second": tally.streams / elapsed,
        "chunks_per_stream": tally.chunks / tally.streams if tally.streams else 0.0,
        "ttft_p50_ms": percentile(ttft_ms, 50),
        "ttft_p99_ms": percentile(ttft_ms, 99),
        "errors": tally.errors,
        "client_cpu_percent": cpu_percent(before, sample(os.getpid())),
    }


def streams(
    url: str, keys: Sequence[str], body: bytes, concurrency: int, seconds: float
) -> dict[str, Any]:
    """Content chunks/s relayed to `concurrency` clients streaming back to back for `seconds`;
    client i uses key i modulo len(keys)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_streams(url, keys, body, concurrency, seconds))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_streams(url, keys, body, concurrency, seconds))
