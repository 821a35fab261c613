"""Probes: requests sent on purpose, as a forger would, and what the servers answer.

A :class:`ProbeTable` sends BookMarkReqs, requests for the bookmark interface and play
URLs, and shows each with what was expected and what came back (notebooks 02, 03, 04).
"""

from __future__ import annotations

import html
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from rtsp_resume import tokens
from rtsp_resume.player import Player, PlayerError
from rtsp_resume.widgets.display import _CSS, Shown, _table


@dataclass(frozen=True)
class Probe:
    """One request sent on purpose, what was expected and what came back."""

    what: str
    expected: str
    got: str
    as_expected: bool
    answer: Any = None


def post_json(url: str, body: Any, headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, Any]:
    """POST ``body`` as JSON; returns (HTTP status, decoded JSON answer or text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json",
                                                 **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, raw = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class ProbeTable(Shown):
    """A table of probes: each row says what was sent, what should happen, what did."""

    _shown = "html"

    def __init__(self, title: str) -> None:
        self.title = title
        self.probes: list[Probe] = []
        self.html = w.HTML(_CSS + f"<b>{html.escape(title)}</b><br><i>nothing sent yet</i>")
        self.html.add_class("rr-probes")

    @property
    def all_as_expected(self) -> bool:
        return bool(self.probes) and all(p.as_expected for p in self.probes)

    def add(self, probe: Probe) -> Probe:
        self.probes.append(probe)
        rows = [(html.escape(p.what), html.escape(p.expected), html.escape(p.got),
                 '<span class="rr-ok">as expected</span>' if p.as_expected
                 else '<span class="rr-bad">UNEXPECTED</span>') for p in self.probes]
        self.html.value = (_CSS + f"<b>{html.escape(self.title)}</b>"
                           + _table(rows, ("sent", "expected", "answer", "")))
        return probe

    def bookmark_set(self, what: str, portal_url: str, body: dict[str, Any],
                     key: bytes | None, expect: int, nonce: str | None = None,
                     signed_at: float | None = None) -> Probe:
        """POST a BookMarkReq to the reverse bookmark-set interface, signed with ``key``
        (None: unsigned) at ``signed_at`` (default now) with ``nonce`` (default a new
        one); ``expect`` is the ResultCode that should come back."""
        data = json.dumps(body, separators=(",", ":")).encode()
        when = time.time() if signed_at is None else signed_at
        headers = tokens.sign_request(key, data, when, nonce) if key else {}
        status, answer = post_json(portal_url.rstrip("/") + "/api/bookmark/set", data,
                                   headers)
        code = answer.get("ResultCode") if isinstance(answer, dict) else None
        result = answer.get("Result") if isinstance(answer, dict) else answer
        name = getattr(expect, "name", "").lower()
        wanted = f"ResultCode {int(expect)}" + (f" ({name})" if name else "")
        return self.add(Probe(what, wanted, f"HTTP {status}, ResultCode {code} ({result})",
                              code == expect, answer))

    def bookmark_interface(self, what: str, portal_url: str, body: dict[str, Any],
                           expect: str) -> Probe:
        """POST a request for the bookmark interface (claims 3, 4, 9, 10); ``expect`` is
        ``"url"`` (accepted) or the portal's error word (refused)."""
        status, answer = post_json(portal_url.rstrip("/") + "/api/bookmark/interface", body)
        if isinstance(answer, dict) and "url" in answer:
            got, word = f"HTTP {status}: a resume URL at {answer.get('ContentBM')} s", "url"
        else:
            word = answer.get("error") if isinstance(answer, dict) else str(answer)
            got = f"HTTP {status}: {word}"
        wanted = "a resume URL" if expect == "url" else f"refused: {expect}"
        return self.add(Probe(what, wanted, got, word == expect, answer))

    def play_url(self, what: str, url: str, expect: int | None) -> Probe:
        """Open an RTSP URL with the project's player; ``expect`` is the RTSP status of
        the refusal, or None when it should play."""
        player = Player(url, request_timeout=3.0)
        try:
            player.start()
        except PlayerError as exc:
            got, status = f"RTSP {exc.status}: {exc}", exc.status
        else:
            got, status = f"playing from {player.range_start or 0:.2f} s", None
        finally:
            player.close_abruptly()
        wanted = "plays" if expect is None else f"RTSP {expect}"
        return self.add(Probe(what, wanted, got, status == expect))
