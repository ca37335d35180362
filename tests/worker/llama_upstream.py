"""A real OpenAI-compatible upstream for worker tests: llama.cpp's server on a tiny random model.

The model is generated here with the `gguf` package (no download): a 2-layer,
64-wide llama with a 260-token byte-fallback vocabulary, about 0.4 MB. Its output
is gibberish by design, but shaped so tests can rely on it: every embedding
carries a constant positive feature that the output layer turns into a large
negative logit for the end-of-sequence, control and non-printable byte tokens,
so the model never stops early and each generated token is one printable
character (one streamed delta per token). The same model written `embedding=True`
pools its token states (mean) into one vector per input, as embedding models do, for a
server started with `--embedding true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

MODEL_ALIAS = "tiny-llama"
EMBED_ALIAS = "tiny-embed"
VOCAB_SIZE = 260
WIDTH = 64
LAYERS = 2
FFN = 128
HEADS = 4
CONTEXT = 2048
_BYTE_BASE = 3  # <unk>, <s>, </s> come first, then <0x00>..<0xFF>


def llama_available() -> bool:
    # find_spec, not import: importing llama_cpp here would load the library into
    # the test process, which only the server subprocess needs.
    return all(importlib.util.find_spec(name) for name in ("gguf", "llama_cpp", "fastapi"))


def require_llama() -> None:
    """Skips the test without llama-cpp-python, except on CI where it must be installed.

    Only tests marked `llama` call this; `make test` deselects them and `make
    test-llama` installs the extra first, so a skip means someone ran them by hand.
    """
    if llama_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(
            "CI=true but llama-cpp-python[server] / gguf are missing: run `make test-llama`"
            " (it installs the llama extra)"
        )
    pytest.skip("llama-cpp-python[server] and gguf not installed: run `make test-llama`")


def write_tiny_llama(path: Path, seed: int = 0, *, embedding: bool = False) -> Path:
    """Writes the tiny random llama described in the module docstring."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    if embedding:  # without it llama.cpp answers one vector per token
        writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_name("gpucloud tiny test llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _add_vocab(writer, gguf.TokenType)
    _add_weights(writer, seed)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_vocab(writer: Any, token_type: Any) -> None:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
    types = [token_type.UNKNOWN, token_type.CONTROL, token_type.CONTROL]
    types += [token_type.BYTE] * 256 + [token_type.NORMAL]
    assert len(tokens) == VOCAB_SIZE
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * VOCAB_SIZE)
    writer.add_token_types([int(t) for t in types])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def _add_weights(writer: Any, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)

    def weights(*shape: int, scale: float = 0.02) -> Any:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    ones = np.ones(WIDTH, dtype=np.float32)
    embeddings = weights(VOCAB_SIZE, WIDTH, scale=1.0)
    embeddings[:, 0] = 8.0  # the constant feature; it dominates the residual stream
    output = weights(VOCAB_SIZE, WIDTH, scale=1.0)
    output[:, 0] = 0.0
    output[_banned_tokens(), 0] = -1000.0
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", output)
    for layer in range(LAYERS):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name}.weight", weights(WIDTH, WIDTH))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", ones)
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(FFN, WIDTH))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(FFN, WIDTH))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(WIDTH, FFN))


def _banned_tokens() -> list[int]:
    """Control tokens, non-printable bytes and the space marker: never generated."""
    printable = range(0x20, 0x7F)
    return [t for t in range(VOCAB_SIZE) if t - _BYTE_BASE not in printable]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LlamaServer:
    """`python -m llama_cpp.server` as a subprocess that tests can kill and restart."""

    def __init__(
        self, model: Path, log_path: Path, *extra_args: str, alias: str = MODEL_ALIAS
    ) -> None:
        self.model = model
        self.alias = alias
        self.log_path = log_path
        self.extra_args = extra_args
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 60.0) -> None:
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model), "--model_alias", self.alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(CONTEXT), "--n_threads", "1",
            *self.extra_args,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its "disconnected" line, at once
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"llama server exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                # Any answer will do: a server started with --api_key answers 401.
                httpx.get(f"{self.url}/models", timeout=1.0)
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"llama server not ready in {timeout}s: {self.log_path.read_text()[-2000:]}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def running_llama(
    model: Path, log_path: Path, *extra_args: str, alias: str = MODEL_ALIAS
) -> Iterator[LlamaServer]:
    server = LlamaServer(model, log_path, *extra_args, alias=alias)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class DisconnectProxy:
    """A TCP proxy that records when the client side hangs up on a connection.

    Put between the backend and the upstream, it shows that cancelling a task
    really drops the upstream request instead of letting it run on.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.client_hangups = 0
        self.bytes_from_upstream = 0
        self.hangup = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        connection = asyncio.current_task()
        assert connection is not None
        self._tasks.add(connection)
        upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up = asyncio.create_task(self._pump(upstream_r, client_w, count=True))
        down = asyncio.create_task(self._pump(client_r, upstream_w, count=False))
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if down in done:  # the client closed its side first
                self.client_hangups += 1
                self.hangup.set()
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            for writer in (client_w, upstream_w):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            self._tasks.discard(connection)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if count:
                    self.bytes_from_upstream += len(data)
                writer.write(data)
                await writer.drain()
