"""The portal's pages: sign in, the programs, the bookmarks (claim 1's bookmark list) and
the play and resume pages, rendered on the server from ``views/``.

A page session is the JSON API's login session, its UserToken in an HttpOnly, SameSite
cookie; every form carries a CSRF token (an HMAC of the login session id), and the sign-in
form one matched by a cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bottle

from rtsp_resume.portal.catalogue import title_for
from rtsp_resume.portal.checks import MAX_TEXT, ApiError
from rtsp_resume.portal.store import LoginSession
from rtsp_resume.position import format_clock

if TYPE_CHECKING:
    from rtsp_resume.portal.app import Portal

VIEWS, STATIC = Path(__file__).parent / "views", Path(__file__).parent / "static"
SESSION_COOKIE, LOGIN_CSRF_COOKIE = "rtsp_resume_session", "rtsp_resume_login"


def format_duration(seconds: float) -> str:
    """``90.4`` -> ``1:30``; ``3600`` -> ``1:00:00``."""
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render(name: str, **values: Any) -> str:
    values.setdefault("csrf", "")
    return bottle.template(name, template_lookup=[str(VIEWS)], fmt_pos=format_clock,
                           fmt_dur=format_duration, **values)


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
        token = bottle.request.get_cookie(SESSION_COOKIE)
        return self.portal.valid_session(token) if token else None

    def _require_page_session(self, *, form: bool = False) -> LoginSession:
        """The signed-in user's session (else off to /login); for a form, its CSRF checked."""
        session = self._page_session()
        if session is None:
            bottle.redirect("/login")
        assert session is not None
        if form and not hmac.compare_digest(bottle.request.forms.get("csrf", "").encode(),
                                            self.csrf_token(session).encode()):
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
        forms = bottle.request.forms
        expected = bottle.request.get_cookie(LOGIN_CSRF_COOKIE) or ""
        if not expected or not hmac.compare_digest(forms.get("csrf", "").encode(),
                                                    expected.encode()):
            bottle.response.status = 400
            return self.page_login(error="The form has expired; please try again.")
        name = forms.getunicode("user", "") or ""
        password = forms.getunicode("password", "") or ""
        user_id = None
        if 0 < len(name) <= 64 and 0 < len(password) <= MAX_TEXT:
            try:
                user_id = self.portal.authenticate(name, password)
            except ApiError as exc:  # the guessing brake
                bottle.response.status = exc.status
                bottle.response.set_header("Retry-After", exc.headers["Retry_After"])
                return self.page_login(error=f"Too many wrong passwords: {exc.detail}.",
                                       user=name[:64])
        if user_id is None:
            bottle.response.status = 401
            return self.page_login(error="Unknown user or wrong password.", user=name[:64])
        ttl = self.portal.settings.login_ttl
        _, user_token = self.portal.store.create_session(user_id, ttl, self.portal.clock())
        bottle.response.set_cookie(SESSION_COOKIE, user_token, httponly=True, samesite="lax",
                                   path="/", max_age=int(ttl))
        bottle.response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        bottle.redirect("/bookmarks", 303)
        return None

    def page_logout(self) -> None:
        if self._page_session() is not None:
            session = self._require_page_session(form=True)
            self.portal.store.revoke_session(session.session_id, self.portal.clock())
        bottle.response.delete_cookie(SESSION_COOKIE, path="/")
        bottle.redirect("/login", 303)

    def page_programs(self) -> str:
        session = self._require_page_session()
        marks = {b.content_id: b for b in self.portal.store.bookmarks(session.user_id)}
        return self._page("programs.tpl", session, "Programs",
                          programs=self.portal.catalogue.list(), marks=marks)

    def page_bookmarks(self) -> str:
        session = self._require_page_session()
        items = []
        for b in self.portal.store.bookmarks(session.user_id):
            program = self.portal.catalogue.get(b.content_id)
            items.append((b, program.title if program else title_for(b.content_id),
                          program.duration if program else None))
        return self._page("bookmarks.tpl", session, "My bookmarks", items=items,
                          iso_time=iso_time)

    def page_play(self) -> str:
        session = self._require_page_session(form=True)
        program = self.portal.catalogue.get(bottle.request.forms.getunicode("ContentID", "") or "")
        if program is None:
            raise bottle.HTTPError(404, "No such program.")
        return self._page("play.tpl", session, f"Play {program.title}", program=program,
                          play=self.portal.start_play(session, program, start=0.0), resumed=False)

    def page_resume(self) -> str:
        session = self._require_page_session(form=True)
        forms = bottle.request.forms
        try:
            content_bm = float(forms.get("ContentBM", ""))
        except ValueError:
            raise bottle.HTTPError(400, "Bad bookmark position.") from None
        try:
            play = self.portal.bookmark_interface(
                user_token=bottle.request.get_cookie(SESSION_COOKIE) or "",
                encrypt_token=forms.getunicode("EncryptToken", "") or "",
                content_id=forms.getunicode("ContentID", "") or "", content_bm=content_bm)
        except ApiError as exc:
            raise bottle.HTTPError(exc.status, f"Cannot resume: {exc.detail}.") from None
        program = self.portal.catalogue.get(play["ContentID"])
        assert program is not None
        return self._page("play.tpl", session, f"Resume {program.title}", program=program,
                          play=play, resumed=True)
