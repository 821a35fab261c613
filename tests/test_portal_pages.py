"""The portal's pages over plain HTTP (the browser test drives the same pages in Chromium).

Claim 1's "when the terminal logs in again, the portal returns its bookmarks" and the
embodiment's bookmark button under the interrupted program, as HTML.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from pathlib import Path

import pytest
from portal_support import Http, Portal, running_portal

from rtsp_resume import tokens
from rtsp_resume.portal.pages import format_duration
from rtsp_resume.position import format_clock

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def portal(tmp_path: Path, sample_dir: Path):
    with running_portal(tmp_path / "data", sample_dir) as p:
        yield p


class Browser:
    """Just enough of a browser: one cookie jar, forms posted with their hidden fields."""

    def __init__(self, http: Http) -> None:
        self.http = http
        self.cookies: dict[str, str] = {}

    def _send(self, method: str, path: str, fields: dict[str, str] | None = None):
        headers = dict(FORM) if fields is not None else {}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = urllib.parse.urlencode(fields).encode() if fields is not None else None
        reply = self.http.request(method, path, body, headers=headers)
        for header in reply.headers.get_all("Set-Cookie") or []:
            name, _, rest = header.partition("=")
            value = rest.split(";")[0]
            if value in ("", '""') or "max-age=0" in header.lower():
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return reply

    def get(self, path: str):
        return self._send("GET", path)

    def submit(self, page: str, action: str, **fields: str):
        """Post the form of ``page`` whose action is ``action`` (hidden fields included)."""
        forms = re.findall(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>',
                           page, re.S)
        for form_action, inner in forms:
            if form_action != action:
                continue
            hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                     inner))
            hidden = {k: html.unescape(v) for k, v in hidden.items()}
            if all(hidden.get(k, v) == v for k, v in fields.items() if k in hidden):
                return self._send("POST", action, {**hidden, **fields})
        raise AssertionError(f"no form posting to {action} with {fields}")

    def login(self, user: str = "alice", password: str = "alice-pw"):
        page = self.get("/login").text
        return self.submit(page, "/login", user=user, password=password)


def test_login_then_bookmark_button_then_resume_url(portal: Portal) -> None:
    portal.interrupt(portal.login("alice"), 12.43)  # the streaming server's report
    browser = Browser(portal.http)
    reply = browser.login()
    assert (reply.status, reply.headers["Location"].endswith("/bookmarks")) == (303, True)
    page = browser.get("/bookmarks").text
    assert "My bookmarks" in page and "Sample" in page
    assert ">Resume at 0:12.4</button>" in page
    assert "Interrupted at 0:12.4" in page and "of 0:30" in page

    resumed = browser.submit(page, "/resume", ContentID="sample")
    assert resumed.status == 200, resumed.text
    url = html.unescape(re.search(r'<textarea id="play-url"[^>]*>([^<]+)</textarea>',
                                  resumed.text).group(1))
    assert url.startswith("rtsp://127.0.0.1:8554/sample?token=")
    grant = tokens.verify_play_token(portal.secret, url.split("token=")[1], portal.clock())
    assert (grant.user_id, grant.start) == ("alice", 12.43)
    assert f'href="{html.escape(url)}">Open</a>' in resumed.text
    # The exact commands, the URL quoted for a shell (its "?" is a glob character).
    for tool in ("ffplay", "vlc"):
        command = re.search(rf'id="{tool}-command"[^>]* value="([^"]+)"', resumed.text)
        assert command is not None and html.unescape(command.group(1)) == f"{tool} '{url}'"
    assert 'data-copy="play-url"' in resumed.text and "/static/copy.js" in resumed.text
    assert "Resume URL" in resumed.text and "Resumes at <strong>0:12.4</strong>" in resumed.text


def test_catalogue_plays_and_shows_the_bookmark_under_its_program(portal: Portal) -> None:
    portal.interrupt(portal.login("alice"), 7.0, "sample_slices")
    browser = Browser(portal.http)
    browser.login()
    page = browser.get("/programs").text
    assert page.count('aria-label="Play ') == 2
    assert "Sample slices" in page and "0:20" in page
    assert page.count(">Resume at ") == 1 and ">Resume at 0:07.0</button>" in page
    played = browser.submit(page, "/play", ContentID="sample")
    assert played.status == 200
    assert "Play URL" in played.text and "rtsp://127.0.0.1:8554/sample?token=" in played.text


def test_wrong_password_shows_an_error_and_no_session(portal: Portal) -> None:
    browser = Browser(portal.http)
    reply = browser.login(password="nope")
    assert reply.status == 401
    assert "Unknown user or wrong password." in reply.text
    assert "rtsp_resume_session" not in browser.cookies
    assert browser.get("/bookmarks").status == 303  # back to the login page


def test_logout_ends_the_session(portal: Portal) -> None:
    browser = Browser(portal.http)
    browser.login()
    page = browser.get("/bookmarks").text
    assert "No bookmarks yet" in page
    cookie = browser.cookies["rtsp_resume_session"]
    assert browser.submit(page, "/logout").status == 303
    assert "rtsp_resume_session" not in browser.cookies
    # The old cookie value is dead on the server too, not just forgotten by the browser.
    stolen = portal.http.get("/bookmarks", headers={"Cookie": f"rtsp_resume_session={cookie}"})
    assert stolen.status == 303 and stolen.headers["Location"].endswith("/login")


def test_expired_session_goes_back_to_login(portal: Portal) -> None:
    browser = Browser(portal.http)
    browser.login()
    assert browser.get("/programs").status == 200
    portal.clock.advance(8 * 3600 + 1)
    reply = browser.get("/programs")
    assert reply.status == 303 and reply.headers["Location"].endswith("/login")


def test_resume_with_a_stale_form_explains_the_refusal(portal: Portal) -> None:
    session = portal.login("alice")
    portal.interrupt(session, 5.0)
    browser = Browser(portal.http)
    browser.login()
    page = browser.get("/bookmarks").text
    portal.clock.advance(5)
    portal.interrupt(session, 9.0)  # replaced while the page was open
    reply = browser.submit(page, "/resume", ContentID="sample")
    assert reply.status == 403
    assert "Cannot resume" in reply.text and "<!doctype html>" in reply.text


def test_every_page_is_phone_ready(portal: Portal) -> None:
    browser = Browser(portal.http)
    pages = [browser.get("/login").text]
    browser.login()
    pages += [browser.get("/programs").text, browser.get("/bookmarks").text]
    for page in pages:
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        # Every visible input has a label pointing at it (screen readers, get_by_label).
        for input_id in re.findall(r'<(?:input|textarea) id="([^"]+)"', page):
            assert f'<label for="{input_id}">' in page
    css = portal.http.get("/static/portal.css")
    assert css.status == 200 and "text/css" in css.headers["Content-Type"]


@pytest.mark.parametrize("seconds,text", [(0, "0:00.0"), (12.43, "0:12.4"), (59.96, "1:00.0"),
                                          (125.06, "2:05.1"), (3725.0, "1:02:05.0")])
def test_position_labels(seconds: float, text: str) -> None:
    assert format_clock(seconds) == text


def test_duration_labels() -> None:
    assert [format_duration(s) for s in (0, 30, 90.4, 3600)] == ["0:00", "0:30", "1:30",
                                                                 "1:00:00"]


def test_an_interruption_at_an_unknown_position_is_explained(portal: Portal) -> None:
    """Position 0 (nothing proven shown) makes no bookmark; the page says why rather than
    showing nothing new, or only an older bookmark as if it were the latest."""
    user_token = portal.login("alice")
    portal.interrupt(user_token, 9.0)
    browser = Browser(portal.http)
    browser.login()
    assert "no bookmark was" not in browser.get("/bookmarks").text
    portal.interrupt(user_token, 0.0)  # the next viewing broke off before any proof
    page = browser.get("/bookmarks").text
    assert "Sample broke off on" in page and "no bookmark was\nmade" in page
    assert ">Resume at 0:09.0</button>" in page  # the older bookmark is still there
    portal.interrupt(user_token, 4.0)  # a later viewing made one again
    assert "no bookmark was" not in browser.get("/bookmarks").text
