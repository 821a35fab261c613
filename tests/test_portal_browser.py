"""The portal in a real browser (Debian Chromium through Playwright), on a phone-sized screen.

The patent's embodiment from the viewer's side: the streaming server has reported an
interruption (through the real signed reverse interface); the viewer logs in again, sees a
bookmark button under the interrupted program, presses it and gets the resume URL.
Screenshots go to ``artifacts/`` (kept by CI as test artifacts).

Without Chromium or Playwright the test is skipped on a user's machine and fails in CI
(``CI=true``), where ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ARTIFACTS
from portal_support import running_portal

from rtsp_resume import tokens

PHONE = {"width": 375, "height": 740}



def test_login_see_the_bookmark_button_resume(browser, tmp_path: Path, sample_dir: Path) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    with running_portal(tmp_path / "data", sample_dir) as portal:
        # The streaming server's report of Alice's interrupted session.
        portal.interrupt(portal.login("alice"), 12.43, "sample")
        portal.clock.advance(5)
        portal.interrupt(portal.login("alice"), 3.0, "sample_slices")

        context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
        page = context.new_page()
        page.set_default_timeout(10_000)
        try:
            page.goto(f"{portal.server.url}/")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.get_by_label("User name").fill("alice")
            page.get_by_label("Password").fill("wrong")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_have_text("Unknown user or wrong password.")
            page.screenshot(path=str(ARTIFACTS / "portal_login.png"), full_page=True)
            page.get_by_label("Password").fill("alice-pw")
            page.get_by_role("button", name="Sign in").click()

            expect(page.get_by_role("heading", name="My bookmarks")).to_be_visible()
            button = page.get_by_role("button", name="Resume at 0:12.4")
            expect(button).to_be_visible()
            expect(page.get_by_role("button", name="Resume at 0:03.0")).to_be_visible()
            # Newest first: the program interrupted last is on top.
            titles = page.get_by_role("heading", level=2).all_inner_texts()
            assert titles == ["Sample slices", "Sample"]
            assert page.evaluate(
                "document.documentElement.scrollWidth <= window.innerWidth"), "sideways scroll"
            page.screenshot(path=str(ARTIFACTS / "portal_bookmarks.png"), full_page=True)

            button.click()
            expect(page.get_by_role("heading", name="Resume Sample")).to_be_visible()
            url_box = page.get_by_label("Resume URL")
            expect(url_box).to_have_value(
                re.compile(r"^rtsp://127\.0\.0\.1:8554/sample\?token=[\w.-]+$"))
            url = url_box.input_value()
            grant = tokens.verify_play_token(portal.secret, url.split("token=")[1],
                                             portal.clock())
            assert (grant.user_id, grant.content_id, grant.start) == ("alice", "sample", 12.43)
            expect(page.get_by_role("link", name="Open")).to_have_attribute("href", url)
            expect(page.get_by_label("ffplay (FFmpeg)")).to_have_value(f"ffplay '{url}'")
            expect(page.get_by_label("VLC")).to_have_value(f"vlc '{url}'")
            page.get_by_role("button", name="Copy the ffplay command").click()
            copy = page.locator('button[data-copy="ffplay-command"]')  # its name changes
            expect(copy).to_have_text(re.compile("Copied|Press Ctrl-C to copy"))
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "portal_resume.png"), full_page=True)

            page.get_by_role("navigation").get_by_role("link", name="Programs").click()
            expect(page.get_by_role("button", name="Play Sample from the start")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "portal_programs.png"), full_page=True)

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.goto(f"{portal.server.url}/bookmarks")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        finally:
            context.close()
