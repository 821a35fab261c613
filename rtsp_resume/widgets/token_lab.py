"""The token lab: claims 4 and 10, forged tokens refused (``04_tokens_claims_4_10.ipynb``).

Also what a play token says (:func:`decode_token`) and how a forger edits one
(:func:`tamper`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import ipywidgets as w

from rtsp_resume import tokens
from rtsp_resume.client import PortalClient, interface_request
from rtsp_resume.widgets.display import Shown
from rtsp_resume.widgets.probes import ProbeTable
from rtsp_resume.widgets.terminal import Terminal


def decode_token(token: str) -> dict[str, Any]:
    """What a play token (EncryptToken) says, WITHOUT checking it: for display only.

    The payload is readable by anyone; only the MAC makes it trustworthy, and only the
    holders of the shared key can check that (:func:`rtsp_resume.tokens.verify_play_token`).
    """
    import base64

    body = token.partition(".")[0]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    names = {"v": "version", "u": "UserID", "c": "ContentID", "s": "login session",
             "b": "start (s)", "i": "issued", "e": "expires", "n": "nonce"}
    return {names.get(k, k): v for k, v in json.loads(raw).items()}


def tamper(token: str) -> str:
    """The token with one character of its payload changed (a forger's edit)."""
    middle = len(token.partition(".")[0]) // 2
    swapped = "A" if token[middle] != "A" else "B"
    return token[:middle] + swapped + token[middle + 1:]


def _forged_token(user_id: str, content_id: str) -> str:
    """A well-formed play token signed with a random key: one nobody shares (a forger's)."""
    return tokens.issue_play_token(os.urandom(32), user_id=user_id, content_id=content_id,
                                   login_session="forged", now=time.time())


class TokenLab(Shown):
    """Claims 4 and 10: requests with forged tokens, refused by the portal and by the
    streaming server; one genuine request accepted (``04_tokens_claims_4_10``).

    Needs a terminal whose bookmark is listed (``wait_for_bookmark`` first). The button
    sends every case once.
    """

    def __init__(self, terminal: Terminal, other_user: str = "bob") -> None:
        self.terminal = terminal
        self.other_user = other_user
        self.portal_probes = ProbeTable("The bookmark interface (portal)")
        self.stream_probes = ProbeTable("Play URLs (streaming server)")
        self.try_button = w.Button(description="Try every forgery", icon="user-secret",
                                   button_style="warning", layout=w.Layout(width="220px"))
        self.try_button.on_click(lambda _: self._try_all())
        self.widget = w.VBox([self.try_button, self.portal_probes.html,
                              self.stream_probes.html])
        self.error: BaseException | None = None

    @property
    def all_as_expected(self) -> bool:
        return (self.error is None and self.portal_probes.all_as_expected
                and self.stream_probes.all_as_expected)

    def _try_all(self) -> None:
        try:
            self.error = None
            self._portal_cases()
            self._stream_cases()
        except Exception as exc:  # shown; the notebook's assert then fails
            self.error = exc
            self.terminal.stage.log.say(f"token lab failed: {exc!r}")

    def _portal_cases(self) -> None:
        t = self.terminal
        if t.portal is None or t.portal.user_token is None or not t.bookmarks.rows:
            raise RuntimeError("the terminal needs a listed bookmark first")
        url = t.stage.system.portal_url
        bookmark = t.bookmarks.rows[0]
        genuine = interface_request(bookmark, t.portal.user_token)
        logged_out = PortalClient(url)
        logged_out.login(t.user, t.password)
        old_token = logged_out.user_token
        logged_out.logout()
        other = PortalClient(url)
        other.login(self.other_user, dict(t.stage.system.users)[self.other_user])
        forged = _forged_token(bookmark["UserID"], bookmark["ContentID"])
        probes = self.portal_probes
        probes.bookmark_interface("the genuine request", url, genuine, "url")
        probes.bookmark_interface("EncryptToken with one character changed", url,
                                  {**genuine, "EncryptToken": tamper(bookmark["EncryptToken"])},
                                  "token_mismatch")
        probes.bookmark_interface("EncryptToken signed with another key", url,
                                  {**genuine, "EncryptToken": forged}, "token_mismatch")
        probes.bookmark_interface("UserToken with one character changed", url,
                                  {**genuine, "UserToken": tamper(t.portal.user_token)},
                                  "invalid_user_token")
        probes.bookmark_interface("UserToken of a login that logged out", url,
                                  {**genuine, "UserToken": old_token}, "invalid_user_token")
        probes.bookmark_interface(f"UserToken of another user ({self.other_user})", url,
                                  {**genuine, "UserToken": other.user_token}, "no_bookmark")
        probes.bookmark_interface("ContentBM moved 10 s later", url,
                                  {**genuine, "ContentBM": float(bookmark["ContentBM"]) + 10},
                                  "position_mismatch")

    def _stream_cases(self) -> None:
        t = self.terminal
        assert t.portal is not None
        content = t.bookmarks.rows[0]["ContentID"]
        good = t.portal.play(content)
        token = good["EncryptToken"]
        base = good["url"].split("?", 1)[0]
        others = [c["ContentID"] for c in t.portal.contents() if c["ContentID"] != content]
        forged = _forged_token(t.user, content)
        probes = self.stream_probes
        probes.play_url("the genuine play URL", good["url"], None)
        probes.play_url("no token at all", base, 401)
        probes.play_url("token with one character changed", f"{base}?token={tamper(token)}",
                        401)
        probes.play_url("token signed with another key", f"{base}?token={forged}", 401)
        if others:
            other_base = base.rsplit("/", 1)[0] + "/" + others[0]
            probes.play_url(f"this token on another program ({others[0]})",
                            f"{other_base}?token={token}", 401)
