"""Passwords at rest and under attack: scrypt hashes (RFC 7914), SHA-256 token digests,
and a brake on guessing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Kdf:
    """scrypt's cost, stored in each hash. The default (32 MiB, about 70 ms here) makes a
    guess expensive and a login still quick; tests pass a cheaper one."""
    n: int = 2**15
    r: int = 8
    p: int = 1

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        digest = self._derive(password, salt)
        return "$".join(["scrypt", str(self.n), str(self.r), str(self.p),
                         base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])

    @staticmethod
    def verify(password: str, encoded: str) -> bool:
        try:
            scheme, n, r, p, salt, digest = encoded.split("$")
            if scheme != "scrypt":
                return False
            kdf = Kdf(int(n), int(r), int(p))  # the cost this hash was made with
            actual = kdf._derive(password, base64.b64decode(salt, validate=True))
            return hmac.compare_digest(actual, base64.b64decode(digest, validate=True))
        except ValueError:
            return False

    def _derive(self, password: str, salt: bytes) -> bytes:
        return hashlib.scrypt(password.encode(), salt=salt, n=self.n, r=self.r, p=self.p,
                              maxmem=256 * self.n * self.r + 2**20, dklen=32)


def token_hash(token: str) -> str:
    """How a bearer secret is stored: its SHA-256 (the secret itself never hits the disk)."""
    return hashlib.sha256(token.encode()).hexdigest()


class GuessBrake:
    """After ``free`` failures in a row for a key (an account, a client address), the key
    waits ``base * 2**n`` seconds, at most ``cap``, before its next try (the portal answers
    429 with Retry-After, RFC 6585 section 4): no long lockout, one guess per ``cap`` s."""

    def __init__(self, clock: Callable[[], float], free: int = 5, base: float = 1.0,
                 cap: float = 30.0) -> None:
        self.clock, self.free, self.base, self.cap = clock, free, base, cap
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (in a row, last at)
        self._lock = threading.Lock()

    def _wait(self, key: str) -> float:
        count, last = self._failures.get(key, (0, 0.0))
        if count < self.free:
            return 0.0
        return max(0.0, last + min(self.cap, self.base * 2 ** (count - self.free)) - self.clock())

    def attempt(self, *keys: str) -> float:
        """Seconds before these keys may try (0: now, and the try counts as a failure until
        :meth:`succeeded`, so parallel guesses cannot slip through together)."""
        with self._lock:
            wait = max(self._wait(key) for key in keys)
            if wait == 0:
                if len(self._failures) > 10_000:  # bounded: forget keys free to try again
                    self._failures = {k: v for k, v in self._failures.items() if self._wait(k)}
                for key in keys:
                    self._failures[key] = (self._failures.get(key, (0, 0.0))[0] + 1, self.clock())
            return wait

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
