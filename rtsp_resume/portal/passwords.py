"""Passwords and bearer secrets at rest: scrypt hashes (RFC 7914), SHA-256 token digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class Kdf:
    """scrypt parameters for password hashes; the cost is stored in each hash.

    The default (n=2**15, r=8: 32 MiB, about 70 ms here) makes a guess expensive and a
    login still quick. Tests pass a cheaper one.
    """

    n: int = 2**15
    r: int = 8
    p: int = 1

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        digest = _scrypt(password, salt, self.n, self.r, self.p)
        return f"scrypt${self.n}${self.r}${self.p}${_b64(salt)}${_b64(digest)}"

    @staticmethod
    def verify(password: str, encoded: str) -> bool:
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                return False
            actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r),
                             int(p))
            return hmac.compare_digest(actual, base64.b64decode(digest, validate=True))
        except ValueError:
            return False


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + 2**20, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def token_hash(token: str) -> str:
    """How a bearer secret is stored: its SHA-256 (the secret itself never hits the disk)."""
    return hashlib.sha256(token.encode()).hexdigest()
