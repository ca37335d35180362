"""The gRPC metadata every core call carries: credential, request id and client address.

gRPC metadata values must be printable ASCII, and grpc refuses a call whose
metadata is not with an error that is no `AioRpcError`: a credential of other
bytes (`Authorization: Bearer \\xe9`, `?token=%FF`) or a proxy's odd
`X-Forwarded-For` is the client's mistake, so it is a 400 naming it here,
before any call starts, rather than a 500 later.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from gpucloud_gateway.errors import ApiError, invalid
from gpucloud_gateway.middleware import request_info

Metadata = tuple[tuple[str, str], ...]
# (`Bearer <token>`, the param naming where it came from).
Credential = tuple[str, str]

# What grpc accepts in a non-binary metadata value (validate_metadata.cc): 0x20-0x7E.
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def _checked(value: str, param: str) -> str:
    if _PRINTABLE.fullmatch(value) is None:
        raise invalid(
            f"Invalid '{param}': the value must be printable ASCII characters only.",
            param,
            "invalid_header_value",
        )
    return value


def core_metadata(
    request: Request, authorization: str | None, *, credential_param: str = "authorization"
) -> Metadata:
    """The metadata of a call made for `request`; `authorization` is the whole metadata
    value (`Bearer …`), named `credential_param` when it is refused."""
    client = request.scope.get("client")
    pairs = [
        ("x-request-id", request_info(request).request_id),
        ("x-forwarded-for", _checked(client[0] if client else "", "x-forwarded-for")),
    ]
    if authorization is not None:
        pairs.append(("authorization", _checked(authorization, credential_param)))
    return tuple(pairs)


def jwt_credential(request: Request, *, allow_query: bool = False) -> Credential:
    """The caller's JWT as `authorization` metadata, with the param that names its source
    (the header, or `?token=` where allowed: EventSource cannot set headers)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return f"Bearer {token.strip()}", "authorization"
    if allow_query and (query := request.query_params.get("token")):
        return f"Bearer {query}", "token"
    raise ApiError(401, "Missing bearer token: log in first.", code="missing_token")


def session_metadata(request: Request, credential: Credential | None) -> Metadata:
    """Metadata of a management call to the core: the request's, plus the JWT if any."""
    if credential is None:
        return core_metadata(request, None)
    return core_metadata(request, credential[0], credential_param=credential[1])
