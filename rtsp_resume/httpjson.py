"""JSON over HTTP with the standard library: the one way the project calls the portal.

The terminal's portal client, the streaming server's bookmark outbox and the notebooks'
probes all send a JSON body and read a JSON answer; they differ only in what they make of
the status. :func:`request_json` does the exchange and leaves that judgement to them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def request_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> tuple[int, Any]:
    """Send ``body`` (JSON-encoded unless already bytes); return (status, answer).

    The answer is the decoded JSON, or the text when it is not JSON. 4xx and 5xx answers
    are returned like any other; only a failure to reach the server raises (``OSError``:
    refused, reset, timed out, unknown host).
    """
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
