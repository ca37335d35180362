"""Opening a grpc.aio channel to the core: plaintext, or TLS; shared by the worker and gateway."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc


def open_channel(
    address: str,
    *,
    tls: bool = False,
    tls_ca: Path | None = None,
    options: Sequence[tuple[str, int | str]] = (),
) -> grpc.aio.Channel:
    """A channel to `address`. `tls_ca` (a CA or self-signed certificate, PEM) implies TLS;
    `tls` alone verifies the core against the system's root certificates."""
    if not tls and tls_ca is None:
        return grpc.aio.insecure_channel(address, options=options)
    # Read at every open, so a renewed CA file is picked up on the next reconnect.
    roots = tls_ca.read_bytes() if tls_ca is not None else None
    credentials = grpc.ssl_channel_credentials(root_certificates=roots)
    return grpc.aio.secure_channel(address, credentials, options=options)
