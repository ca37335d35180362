"""TLS to the core: a self-signed core serves trusting workers and refuses the others."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from core_cluster import JOIN, Cluster, ScriptedBackend, collect, text_of, until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gpucloud_gateway import config as gateway_config
from gpucloud_gateway.main import core_channel
from gpucloud_server.config import CoreSettings, parse
from gpucloud_worker import main as worker_main
from gpucloud_worker.agent import WorkerAgent
from gpucloud_worker.config import WorkerSettings


@dataclasses.dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, made for this run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gpucloud test core")])
    now = datetime.datetime.now(datetime.UTC)
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    paths = Certificate(folder / "core.crt", folder / "core.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def core_settings(core_settings: CoreSettings, certificate: Certificate) -> CoreSettings:
    """The suite's core settings, serving TLS: conftest's `cluster` starts it."""
    return dataclasses.replace(core_settings, tls_cert=certificate.cert, tls_key=certificate.key)


@pytest.fixture
async def tls_cluster(cluster: Cluster, certificate: Certificate) -> AsyncIterator[Cluster]:
    """The TLS core, with clients dialling it as the gateway does, trusting its certificate."""
    channel = core_channel(cluster.address, tls_ca=certificate.cert)
    try:
        yield dataclasses.replace(cluster, channel=channel)
    finally:
        await channel.close()


def join(cluster: Cluster, worker_id: str, **tls: Any) -> WorkerAgent:
    """Starts a worker agent against the cluster's core, with the given TLS settings."""
    settings = WorkerSettings(
        cluster.address, JOIN, worker_id, worker_id, heartbeat_interval_s=0.2,
        reconnect_min_s=0.05, reconnect_max_s=0.2, **tls,
    )  # fmt: skip
    agent = WorkerAgent(settings, ScriptedBackend())
    cluster.agents.append((agent, asyncio.create_task(agent.run())))
    return agent


async def test_a_worker_trusting_the_core_certificate_serves_completions_over_tls(
    tls_cluster: Cluster, certificate: Certificate
) -> None:
    join(tls_cluster, "w-tls", tls_ca=certificate.cert)
    await until(lambda: tls_cluster.worker("w-tls") is not None)

    events = await collect(tls_cluster.chat())

    assert text_of(events) == "t0 t1 t2 "
    assert events[-1].WhichOneof("event") == "finished"


async def test_a_plaintext_worker_never_joins_a_tls_core(
    tls_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gpucloud.worker")
    agent = join(tls_cluster, "w-plain")

    await until(lambda: agent.sessions >= 2)  # the first session failed; it is retrying

    assert tls_cluster.core.scheduler.registry.get("w-plain") is None
    assert "session with the core ended: UNAVAILABLE" in caplog.text


async def test_a_tls_worker_without_the_ca_rejects_the_self_signed_core(
    tls_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gpucloud.worker")
    agent = join(tls_cluster, "w-system-roots", tls=True)

    await until(lambda: agent.sessions >= 2)

    assert tls_cluster.core.scheduler.registry.get("w-system-roots") is None
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_the_core_needs_both_a_certificate_and_its_key(certificate: Certificate) -> None:
    with pytest.raises(ValueError, match="--tls-cert and --tls-key"):
        CoreSettings(tls_cert=certificate.cert).check()
    with pytest.raises(ValueError, match="--tls-cert and --tls-key"):
        CoreSettings(tls_key=certificate.key).check()
    with pytest.raises(ValueError, match="not found"):
        CoreSettings(tls_cert=certificate.cert, tls_key=certificate.key.with_name("nope")).check()
    CoreSettings(tls_cert=certificate.cert, tls_key=certificate.key).check()


def test_the_core_reads_tls_paths_from_flags_and_env(certificate: Certificate) -> None:
    settings = parse(
        ["--tls-cert", str(certificate.cert)], {"GPUCLOUD_TLS_KEY": str(certificate.key)}
    )
    assert (settings.tls_cert, settings.tls_key) == (certificate.cert, certificate.key)
    assert parse([], {}).tls_cert is None


def test_the_worker_tls_flags(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUCLOUD_TLS_CA", raising=False)
    base = ["--token", JOIN]
    plain = worker_main.settings(worker_main.parser().parse_args(base))
    assert (plain.tls, plain.tls_ca) == (False, None)
    roots = worker_main.settings(worker_main.parser().parse_args([*base, "--tls"]))
    assert (roots.tls, roots.tls_ca) == (True, None)

    monkeypatch.setenv("GPUCLOUD_TLS_CA", str(certificate.cert))
    assert worker_main.settings(worker_main.parser().parse_args(base)).tls_ca == certificate.cert
    missing = worker_main.parser().parse_args([*base, "--tls-ca", "/nonexistent/ca.pem"])
    with pytest.raises(SystemExit, match="no such file"):
        worker_main.settings(missing)


def test_the_gateway_core_tls_flags(certificate: Certificate) -> None:
    assert gateway_config.parse([], {}).core_tls is False
    assert gateway_config.parse(["--core-tls"], {}).core_tls is True
    ca = str(certificate.cert)
    assert gateway_config.parse([], {"GPUCLOUD_CORE_TLS_CA": ca}).core_tls_ca == certificate.cert
    assert gateway_config.parse(["--core-tls-ca", ca], {}).core_tls_ca == certificate.cert
    with pytest.raises(ValueError, match="not found"):
        gateway_config.parse(["--core-tls-ca", "/nonexistent/ca.pem"], {})
