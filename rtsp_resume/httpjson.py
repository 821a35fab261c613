"""JSON over HTTP with the standard library: the one way the project calls the portal (the
terminal's client, the streaming server's bookmark outbox, the notebooks' probes)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def request_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> tuple[int, Any]:
    """Send ``body`` (JSON-encoded unless already bytes); return (status, decoded JSON or
    text). Every status is returned, for the caller to judge; only a failure to reach the
    server raises (``OSError``: refused, reset, timed out, unknown host)."""
    data = None
    sent = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data, sent, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        with exc:
            status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return status, raw.decode("utf-8", "replace")
