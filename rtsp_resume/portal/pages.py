"""The portal's pages: sign in, the programs, the bookmarks (claim 1's bookmark list) and the
play and resume pages, rendered on the server from ``views/``. A page session is the JSON API's
login session, its UserToken in an HttpOnly, SameSite cookie; every form carries a CSRF token
(an HMAC of the login session id), and the sign-in form one matched by a cookie of its own."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bottle

from rtsp_resume.portal.checks import MAX_TEXT, ApiError
from rtsp_resume.portal.store import LoginSession
from rtsp_resume.position import format_clock

if TYPE_CHECKING:
    from rtsp_resume.portal.app import Portal

VIEWS, STATIC = Path(__file__).parent / "views", Path(__file__).parent / "static"
SESSION_COOKIE, LOGIN_CSRF_COOKIE = "rtsp_resume_session", "rtsp_resume_login"


def format_duration(seconds: float) -> str:
    """``90.4`` -> ``1:30``; ``3600`` -> ``1:00:00``: the clock in whole seconds."""
    return format_clock(round(seconds)).removesuffix(".0")


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render(name: str, **values: Any) -> str:
    values.setdefault("csrf", "")
    return bottle.template(name, template_lookup=[str(VIEWS)], fmt_pos=format_clock,
                           fmt_dur=format_duration, iso_time=iso_time, **values)


def _form(name: str) -> str:
    return bottle.request.forms.getunicode(name, "") or ""


class Pages:
    """The pages' routes on the portal's application."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self._csrf_key = hmac.new(portal.secret, b"rtsp-resume/csrf", hashlib.sha256).digest()
        for method, path, handler in [
            ("GET", "/", self.page_home), ("GET", "/login", self.page_login),
            ("POST", "/login", self.page_login_post), ("POST", "/logout", self.page_logout),
            ("GET", "/programs", self.page_programs), ("POST", "/play", self.page_play),
            ("GET", "/bookmarks", self.page_bookmarks), ("POST", "/resume", self.page_resume),
        ]:
            portal.app.route(path, method, handler)
        portal.app.route("/static/<name>", "GET",
                         lambda name: bottle.static_file(name, root=str(STATIC)))

    def _page_session(self) -> LoginSession | None:
        return self.portal.valid_session(bottle.request.get_cookie(SESSION_COOKIE) or "")

    def _require_page_session(self, *, form: bool = False) -> LoginSession:
        """The signed-in user's session (else off to /login); for a form, its CSRF checked."""
        session = self._page_session()
        if session is None:
            bottle.redirect("/login")
        assert session is not None
        csrf = bottle.request.forms.get("csrf", "").encode()
        if form and not hmac.compare_digest(csrf, self.csrf_token(session).encode()):
            raise bottle.HTTPError(403, "The form has expired. Go back, reload and try again.")
        return session

    def csrf_token(self, session: LoginSession) -> str:
        return hmac.new(self._csrf_key, session.session_id.encode(), hashlib.sha256).hexdigest()

    def _page(self, name: str, session: LoginSession, title: str, **values: Any) -> str:
        return render(name, title=title, user=session.user_id, csrf=self.csrf_token(session),
                      **values)

    def page_home(self) -> None:
        bottle.redirect("/bookmarks" if self._page_session() else "/login")

    def page_login(self, error: str = "", user: str = "") -> str:
        if self._page_session() is not None and not error:
            bottle.redirect("/bookmarks")
        # Login CSRF: the form carries a value matching a cookie only this site can set, so
        # another site cannot sign the browser into an account of its choice.
        value = secrets.token_urlsafe(16)
        bottle.response.set_cookie(LOGIN_CSRF_COOKIE, value, httponly=True, samesite="lax",
                                   path="/login")
        return render("login.tpl", title="Sign in", csrf=value, error=error, user_name=user,
                      user=None)

    def page_login_post(self) -> str | None:
        expected = bottle.request.get_cookie(LOGIN_CSRF_COOKIE) or ""
        csrf = bottle.request.forms.get("csrf", "").encode()
        if not expected or not hmac.compare_digest(csrf, expected.encode()):
            bottle.response.status = 400
            return self.page_login(error="The form has expired; please try again.")
        name, password = _form("user"), _form("password")
        try:
            if not (0 < len(name) <= 64 and 0 < len(password) <= MAX_TEXT):
                raise ApiError(401, "bad_credentials", "")
            _, user_token = self.portal.login(name, password)
        except ApiError as exc:
            bottle.response.status = exc.status
            if exc.status == 429:  # the guessing brake
                bottle.response.set_header("Retry-After", exc.headers["Retry_After"])
            return self.page_login(user=name[:64], error=(
                f"Too many wrong passwords: {exc.detail}." if exc.status == 429
                else "Unknown user or wrong password."))
        bottle.response.set_cookie(SESSION_COOKIE, user_token, httponly=True, samesite="lax",
                                   path="/", max_age=int(self.portal.settings.login_ttl))
        bottle.response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        bottle.redirect("/bookmarks", 303)
        return None

    def page_logout(self) -> None:
        if self._page_session() is not None:
            session_id = self._require_page_session(form=True).session_id
            self.portal.store.revoke_session(session_id, self.portal.clock())
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")
        bottle.redirect("/login", 303)

    def page_programs(self) -> str:
        session = self._require_page_session()
        marks = {b.content_id: b for b in self.portal.store.bookmarks(session.user_id)}
        return self._page("programs.tpl", session, "Programs",
                          programs=self.portal.catalogue.list(), marks=marks)

    def page_bookmarks(self) -> str:
        session = self._require_page_session()
        items = [(b, *self.portal.catalogue.describe(b.content_id))
                 for b in self.portal.store.bookmarks(session.user_id)]
        # A program whose latest interruption came at position 0 (the streaming server had
        # no proof that any picture reached the viewer) got no bookmark: say so.
        latest = {row["content_id"]: row for row in self.portal.store.history(session.user_id)}
        unmade = [(self.portal.catalogue.describe(row["content_id"])[0], row["interrupted_at"])
                  for row in latest.values() if row["position"] <= 0]
        return self._page("bookmarks.tpl", session, "My bookmarks", items=items, unmade=unmade)

    def page_play(self) -> str:
        session = self._require_page_session(form=True)
        program = self.portal.catalogue.get(_form("ContentID"))
        if program is None:
            raise bottle.HTTPError(404, "No such program.")
        return self._page("play.tpl", session, f"Play {program.title}", program=program,
                          play=self.portal.start_play(session, program, start=0.0), resumed=False)

    def page_resume(self) -> str:
        session = self._require_page_session(form=True)
        try:
            play = self.portal.bookmark_interface(
                user_token=bottle.request.get_cookie(SESSION_COOKIE) or "",
                encrypt_token=_form("EncryptToken"), content_id=_form("ContentID"),
                content_bm=float(bottle.request.forms.get("ContentBM", "")))
        except ValueError:
            raise bottle.HTTPError(400, "Bad bookmark position.") from None
        except ApiError as exc:
            raise bottle.HTTPError(exc.status, f"Cannot resume: {exc.detail}.") from None
        program = self.portal.catalogue.get(play["ContentID"])
        assert program is not None
        return self._page("play.tpl", session, f"Resume {program.title}", program=program,
                          play=play, resumed=True)
