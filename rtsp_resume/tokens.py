"""Play tokens and signed portal calls: the secrets the portal and streaming server share.

Pure code (every function takes ``now``), imported by the portal and the streaming server,
which never import each other. The **play token** is the patent's EncryptToken (claims 4,
10): issued by the portal, checked by the streaming server when a session starts, it says
whom the server serves (for the bookmark). It is ``<payload>.<mac>`` in base64url, so it
fits an RTSP URL query: compact JSON and an HMAC-SHA256. A **reverse bookmark call**
(claims 3, 9) is signed over ``timestamp.nonce.body``; the nonce is its idempotency key.
Each use has its own sub-key of the shared key, so one MAC never passes as the other."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TOKEN_VERSION = 1
# A play token only *starts* sessions, so it need not live long: a stolen one is worth
# minutes. A session it started runs on, and its bookmark is still accepted afterwards.
DEFAULT_TTL = 300.0
MAX_TOKEN_LENGTH = 2048

TIMESTAMP_HEADER = "X-RTSP-Resume-Timestamp"
NONCE_HEADER = "X-RTSP-Resume-Nonce"
SIGNATURE_HEADER = "X-RTSP-Resume-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_SCHEME = "v1"

_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{8,128}")


class _Refusal(ValueError):
    """Something refused; ``reason`` is a short machine-readable word, ``detail`` for people."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class InvalidToken(_Refusal):
    """A play token not to honour: "malformed", "bad signature" or "expired"."""


class InvalidSignature(_Refusal):
    """A signed request to refuse: "missing", "malformed", "stale" or "bad signature"."""


@dataclass(frozen=True)
class PlayGrant:
    """What a valid play token grants: this user may play this content from ``start``."""

    token: str
    user_id: str
    content_id: str
    login_session: str
    start: float
    expires: float
    issued: float = 0.0
    nonce: str = ""


def _mac(key: bytes, purpose: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 of ``message`` under the sub-key of ``purpose``."""
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise ValueError("the shared key must be at least 16 bytes")
    subkey = hmac.new(bytes(key), b"rtsp-resume/" + purpose, hashlib.sha256).digest()
    return hmac.new(subkey, message, hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Only the canonical spelling: b64decode skips characters outside the alphabet, and
    # the unused low bits of the last character would let one token be written several ways.
    if _b64encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def issue_play_token(key: bytes, *, user_id: str, content_id: str, login_session: str,
                     start: float = 0.0, ttl: float = DEFAULT_TTL, now: float) -> str:
    """Make a play token (EncryptToken) valid from ``now`` for ``ttl`` seconds."""
    if not (math.isfinite(start) and start >= 0):
        raise ValueError(f"start must be a finite position >= 0, got {start!r}")
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    payload = {"v": TOKEN_VERSION, "u": user_id, "c": content_id, "s": login_session,
               "b": round(float(start), 3), "i": round(float(now), 3),
               "e": round(float(now + ttl), 3), "n": secrets.token_urlsafe(9)}
    body = _b64encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{body}.{_b64encode(_mac(key, b'play-token', body.encode('ascii')))}"


def verify_play_token(key: bytes, token: str, now: float, *, leeway: float = 0.0) -> PlayGrant:
    """Check a play token's MAC and expiry and return what it grants. ``leeway`` extends
    the expiry: a session outlives the token that started it, and so may its bookmark."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed", "empty, too long or not text")
    body, dot, mac_text = token.partition(".")
    if not dot or not body or not mac_text:
        raise InvalidToken("malformed", "expected <payload>.<mac>")
    try:
        mac, raw = _b64decode(mac_text), _b64decode(body)
    except ValueError as exc:  # binascii.Error is one
        raise InvalidToken("malformed", "not base64url") from exc
    if not hmac.compare_digest(mac, _mac(key, b"play-token", body.encode("ascii"))):
        raise InvalidToken("bad signature")
    # The MAC held, so the payload is ours; an old version or a bug must still give
    # InvalidToken, not a KeyError.
    try:
        payload = json.loads(raw)
        version = payload.get("v")
        texts, numbers = [payload[k] for k in "ucsn"], [payload[k] for k in "bei"]
    except (ValueError, KeyError, AttributeError) as exc:
        raise InvalidToken("malformed", "bad payload") from exc
    # A JSON true is no number, though Python's bool is an int.
    if not all(isinstance(v, str) for v in texts) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        raise InvalidToken("malformed", "bad payload")
    if version != TOKEN_VERSION:
        raise InvalidToken("malformed", f"unknown token version {version!r}")
    user, content, login, nonce = texts
    grant = PlayGrant(token, user, content, login, *map(float, numbers), nonce=nonce)
    if now > grant.expires + leeway:
        raise InvalidToken("expired", f"expired {now - grant.expires:.0f} s ago")
    return grant


def _request_mac(key: bytes, timestamp: str, nonce: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + nonce.encode("ascii") + b"." + body
    return f"{SIGNATURE_SCHEME}={_mac(key, b'bookmark-request', message).hex()}"


def sign_request(key: bytes, body: bytes, now: float, nonce: str | None = None) -> dict[str, str]:
    """Headers that authenticate ``body`` as sent by a holder of ``key`` at ``now``. A retry
    reuses its ``nonce``: the portal's idempotency key, so no bookmark is stored twice."""
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be 8-128 characters of [A-Za-z0-9_-]")
    timestamp = str(int(now))
    return {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce, IDEMPOTENCY_HEADER: nonce,
            SIGNATURE_HEADER: _request_mac(key, timestamp, nonce, body)}


def verify_request(key: bytes, body: bytes, headers: Mapping[str, str], now: float,
                   max_skew: float = 300.0) -> str:
    """Check the signature headers of a reverse call (names in any case); return its nonce."""
    lowered = {str(name).lower(): value for name, value in headers.items()}
    timestamp, nonce, signature, idempotency = (lowered.get(name.lower()) for name in (
        TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER, IDEMPOTENCY_HEADER))
    if timestamp is None or nonce is None or signature is None:
        raise InvalidSignature("missing", "timestamp, nonce and signature headers are required")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise InvalidSignature("malformed", "timestamp must be whole seconds since the epoch")
    if not _NONCE_RE.fullmatch(nonce):
        raise InvalidSignature("malformed", "nonce must be 8-128 characters of [A-Za-z0-9_-]")
    if idempotency is not None and idempotency != nonce:
        raise InvalidSignature("malformed", "Idempotency-Key differs from the nonce")
    expected = _request_mac(key, timestamp, nonce, body)
    # compare_digest wants both sides ASCII; a non-ASCII header is simply wrong.
    if not signature.isascii() or not hmac.compare_digest(signature, expected):
        raise InvalidSignature("bad signature")
    # Check freshness only after the MAC: the timestamp is then known to be the sender's.
    if abs(now - int(timestamp)) > max_skew:
        raise InvalidSignature("stale", f"timestamp is {now - int(timestamp):+.0f} s off")
    return nonce


def load_or_create_secret(path: Path) -> bytes:
    """Read the shared key from ``path`` (hex), creating a random 32-byte one (mode 0600)
    if absent. Written aside, then hard-linked into place, which fails if the name exists:
    two processes starting at once get the same key, and never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        secret = secrets.token_bytes(32)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secret.hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # else the race's winner's key, below
                os.link(tmp, path)
                return secret
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"{path}: expected a hex-encoded key") from exc
    if len(key) < 16:
        raise ValueError(f"{path}: the key must be at least 16 bytes")
    return key
