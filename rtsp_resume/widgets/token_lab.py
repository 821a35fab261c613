"""Probes: requests sent on purpose, as a forger would, and what the servers answer; the
token lab of claims 4 and 10 is a list of them."""

from __future__ import annotations

import base64
import html
import json
import os
import time
from typing import Any

import ipywidgets as w

from rtsp_resume import tokens
from rtsp_resume.client import PortalClient, interface_request
from rtsp_resume.httpjson import request_json
from rtsp_resume.player import Player, PlayerError
from rtsp_resume.widgets.display import compact, table
from rtsp_resume.widgets.terminal import Terminal

TOKEN_FIELDS = {"v": "version", "u": "UserID", "c": "ContentID", "s": "login session",
                "b": "start (s)", "i": "issued", "e": "expires", "n": "nonce"}


def decode_token(token: str) -> dict[str, Any]:
    """What a play token says, NOT checked: anyone can read it, only the key's holders
    can check its MAC (:func:`rtsp_resume.tokens.verify_play_token`)."""
    body = token.partition(".")[0]
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return {TOKEN_FIELDS.get(name, name): value for name, value in payload.items()}


def tamper(token: str) -> str:
    """The token with one character of its payload changed (a forger's edit)."""
    middle = len(token.partition(".")[0]) // 2
    return token[:middle] + ("B" if token[middle] == "A" else "A") + token[middle + 1:]


def forged_token(user_id: str, content_id: str) -> str:
    """A well-formed play token signed with a key nobody shares."""
    return tokens.issue_play_token(os.urandom(32), user_id=user_id, content_id=content_id,
                                   login_session="forged", now=time.time())


class ProbeTable(w.HTML):
    """A table of probes: what was sent, what should happen, what did."""

    def __init__(self, caption: str) -> None:
        super().__init__(compact(f"<b>{html.escape(caption)}</b><br><i>nothing sent yet</i>"))
        self.caption = caption
        self.probes: list[tuple[str, str, str, bool]] = []  # sent, expected, answer, as such
        self.add_class("rr-probes")

    @property
    def all_as_expected(self) -> bool:
        return bool(self.probes) and all(ok for *_, ok in self.probes)

    def add(self, what: str, expected: str, got: str, ok: bool) -> bool:
        self.probes.append((what, expected, got, ok))
        rows = [(*(html.escape(text) for text in probe[:3]),
                 '<span class="rr-ok">as expected</span>' if probe[3]
                 else '<span class="rr-bad">UNEXPECTED</span>') for probe in self.probes]
        self.value = f"<b>{html.escape(self.caption)}</b>" + table(
            rows, ("sent", "expected", "answer", ""))
        return ok

    def bookmark_set(self, what: str, portal_url: str, body: dict[str, Any], key: bytes | None,
                     expect: int, nonce: str | None = None, signed_at: float | None = None) -> bool:
        """POST a BookMarkReq signed with ``key`` (None: unsigned) at ``signed_at`` (now)
        with ``nonce`` (a new one); ``expect``: the ResultCode that should come back."""
        data = json.dumps(body, separators=(",", ":")).encode()
        when = time.time() if signed_at is None else signed_at
        headers = tokens.sign_request(key, data, when, nonce) if key else {}
        status, answer = request_json("POST", f"{portal_url.rstrip('/')}/api/bookmark/set",
                                      data, headers)
        got = answer if isinstance(answer, dict) else {"Result": answer}
        name = f" ({expect.name.lower()})" if hasattr(expect, "name") else ""
        return self.add(what, f"ResultCode {int(expect)}{name}", f"HTTP {status}, ResultCode "
                        f"{got.get('ResultCode')} ({got.get('Result')})",
                        got.get("ResultCode") == expect)

    def bookmark_interface(self, what: str, portal_url: str, body: dict[str, Any],
                           expect: str) -> bool:
        """POST a bookmark interface request (claims 3, 4, 9, 10); ``expect``: "url" or an error."""
        status, answer = request_json(
            "POST", f"{portal_url.rstrip('/')}/api/bookmark/interface", body)
        got = answer if isinstance(answer, dict) else {"error": answer}
        word = "url" if "url" in got else str(got.get("error"))
        seen = f"a resume URL at {got.get('ContentBM')} s" if "url" in got else word
        return self.add(what, "a resume URL" if expect == "url" else f"refused: {expect}",
                        f"HTTP {status}: {seen}", word == expect)

    def play_url(self, what: str, url: str, expect: int | None) -> bool:
        """Play an RTSP URL; ``expect``: the RTSP status of the refusal, None if it plays."""
        player = Player(url, request_timeout=3.0)
        try:
            player.start()
            got, status = f"playing from {player.range_start or 0:.2f} s", None
        except PlayerError as exc:
            got, status = f"RTSP {exc.status}: {exc}", exc.status
        finally:
            player.close_abruptly()
        return self.add(what, "plays" if expect is None else f"RTSP {expect}", got,
                        status == expect)


class TokenLab(w.VBox):
    """Claims 4 and 10: forgeries refused by portal and streaming server, genuine tokens
    accepted. Needs a terminal with a listed bookmark."""

    def __init__(self, terminal: Terminal, other_user: str = "bob") -> None:
        self.terminal, self.other_user = terminal, other_user
        self.portal_probes = ProbeTable("The bookmark interface (portal)")
        self.stream_probes = ProbeTable("Play URLs (streaming server)")
        self.try_button = w.Button(description="Try every forgery", icon="user-secret",
                                   button_style="warning", layout={"width": "220px"})
        self.try_button.on_click(self.try_all)
        self.error: BaseException | None = None
        super().__init__([self.try_button, self.portal_probes, self.stream_probes])

    @property
    def all_as_expected(self) -> bool:
        return (self.error is None and self.portal_probes.all_as_expected
                and self.stream_probes.all_as_expected)

    def try_all(self, _: Any = None) -> None:  # the button; a failure lands in self.error
        try:
            self.error = None
            self._portal_cases()
            self._stream_cases()
        except Exception as exc:
            self.error = exc
            self.terminal.stage.log.say(f"token lab failed: {exc!r}")

    def _portal_cases(self) -> None:
        if not self.terminal.bookmarks.rows:
            raise RuntimeError("the terminal needs a listed bookmark first")
        t, bookmark = self.terminal, self.terminal.bookmarks.rows[0]
        url, mine = t.stage.system.portal_url, t.portal
        logged_out, other = PortalClient(url), PortalClient(url)
        logged_out.login(t.user, t.password)
        old_token = logged_out.user_token
        logged_out.logout()
        other.login(self.other_user, dict(t.stage.system.users)[self.other_user])
        genuine = interface_request(bookmark, mine.user_token)
        for what, change, expect in [
            ("the genuine request", {}, "url"),
            ("EncryptToken with one character changed",
             {"EncryptToken": tamper(bookmark["EncryptToken"])}, "token_mismatch"),
            ("EncryptToken signed with another key", {"EncryptToken": forged_token(
                bookmark["UserID"], bookmark["ContentID"])}, "token_mismatch"),
            ("UserToken with one character changed", {"UserToken": tamper(mine.user_token)},
             "invalid_user_token"),
            ("UserToken of a login that logged out", {"UserToken": old_token},
             "invalid_user_token"),
            (f"UserToken of another user ({self.other_user})", {"UserToken": other.user_token},
             "no_bookmark"),
            ("ContentBM moved 10 s later", {"ContentBM": float(bookmark["ContentBM"]) + 10},
             "position_mismatch"),
        ]:
            self.portal_probes.bookmark_interface(what, url, {**genuine, **change}, expect)

    def _stream_cases(self) -> None:
        t, content = self.terminal, self.terminal.bookmarks.rows[0]["ContentID"]
        good = t.portal.play(content)
        token, base = good["EncryptToken"], good["url"].split("?", 1)[0]
        cases = [("the genuine play URL", good["url"], None), ("no token at all", base, 401),
                 ("token with one character changed", f"{base}?token={tamper(token)}", 401),
                 ("token signed with another key",
                  f"{base}?token={forged_token(t.user, content)}", 401)]
        others = [c["ContentID"] for c in t.portal.contents() if c["ContentID"] != content]
        if others:
            cases.append((f"this token on another program ({others[0]})",
                          f"{base.rsplit('/', 1)[0]}/{others[0]}?token={token}", 401))
        for what, play_url, expect in cases:
            self.stream_probes.play_url(what, play_url, expect)
