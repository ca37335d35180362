"""The API key secret format: `gpc_` + 30 random base62 characters + a 6-character CRC32.

Modelled on GitHub's tokens: the prefix makes leaked keys recognisable to secret
scanners, 30 base62 characters carry 178 bits of randomness, and the checksum lets
the core refuse a mistyped key without touching the database.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib

PREFIX = "gpc_"
RANDOM_CHARS = 30
CHECKSUM_CHARS = 6
SECRET_LENGTH = len(PREFIX) + RANDOM_CHARS + CHECKSUM_CHARS
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALPHABET_SET = frozenset(ALPHABET)


def _base62(value: int, width: int) -> str:
    digits: list[str] = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    # 62**6 > 2**32, so every CRC32 value fits in six characters.
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_CHARS)


def generate_secret() -> str:
    body = PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_CHARS))
    return body + _checksum(body)


def is_well_formed(secret: str) -> bool:
    """True when the secret has our shape and its checksum matches; no I/O."""
    if len(secret) != SECRET_LENGTH or not secret.startswith(PREFIX):
        return False
    tail = secret[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(tail):
        return False
    body, checksum = secret[:-CHECKSUM_CHARS], secret[-CHECKSUM_CHARS:]
    return secrets.compare_digest(_checksum(body), checksum)


def hash_secret(secret: str) -> str:
    """What the database stores: SHA-256, hex. The secret has 178 random bits, so
    a fast hash is enough (no password-style stretching needed)."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def last4(secret: str) -> str:
    return secret[-4:]
