"""The tour in JupyterLab, in a real browser (Debian Chromium through Playwright).

A copy of ``notebooks/00_tour.ipynb`` is opened in JupyterLab (which must not mark it
modified) and run with *Run All*, as a teacher would. Then the test does what a slow class
does: it lets the video play for 40 s of talk, clicks **Cut the link**, waits for the
interruption and the bookmark to appear on the page (the cut and the verdict still on the
timeline), clicks the bookmark's **Resume** button, sees the outcome under it and the video
play on. Screenshots go to ``artifacts/`` (kept by CI as test artifacts; ``docs/tour.png``
is one of them).

Every Jupyter and IPython folder lives in the test's temporary directory. Without Chromium
or Playwright the test is skipped on a user's machine and fails in CI (``CI=true``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ARTIFACTS, ROOT

SCREEN = {"width": 1280, "height": 1240}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _isolated_env(base: Path) -> dict[str, str]:
    """Environment for JupyterLab and its kernels with every folder under ``base``, a
    ``python3`` kernelspec for this interpreter, and the news pop-up switched off."""
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "JUPYTER_CONFIG_DIR",
                 "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                 "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        folder = base / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    spec = Path(env["JUPYTER_DATA_DIR"]) / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
    }))
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.pop("RTSP_RESUME_AUTOPLAY", None)  # the clicks are the browser's here
    return env


@pytest.fixture
def lab(tmp_path: Path, lesson_dir: Path) -> Iterator[tuple[str, Path]]:
    """JupyterLab serving a folder with a copy of the tour; yields (base URL, folder)."""
    work = tmp_path / "notebooks"
    work.mkdir()
    tour = json.loads((ROOT / "notebooks" / "00_tour.ipynb").read_text())
    # The kernel reports its Python's version; a notebook saved under another patch release
    # is marked modified for that alone, whatever else it holds.
    tour["metadata"]["language_info"]["version"] = platform.python_version()
    (work / "00_tour.ipynb").write_text(json.dumps(tour, indent=1, ensure_ascii=False) + "\n")
    env = _isolated_env(tmp_path / "jupyter")
    port, token = _free_port(), secrets.token_hex(16)
    log = (tmp_path / "lab.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", "--ServerApp.port_retries=0", "--allow-root",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--LabApp.news_url=None"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n"
                                + (tmp_path / "lab.log").read_text(errors="replace")[-3000:])
                time.sleep(0.2)
        yield f"{base}/lab/tree/00_tour.ipynb?token={token}", work
    finally:
        process.terminate()  # SIGTERM: the server shuts its kernels down, then exits
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()



def _npt(text: str) -> float | None:
    found = re.search(r"npt (\d+\.\d+) s", text)
    return float(found.group(1)) if found else None


@pytest.mark.timeout(400)  # a slow class's 40 s, and the lesson's program made if missing
def test_tour_in_jupyterlab(lab: tuple[str, Path], browser) -> None:
    from playwright.sync_api import expect

    url, _ = lab
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport=SCREEN)
    page.set_default_timeout(30_000)
    try:
        page.goto(url)
        # The status bar names the kernel once it exists (the toolbar says idle before).
        expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1000)  # the kernel's language_info has reached the model
        assert page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0, "modified on open"
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

        dashboard = page.locator(".rr-dashboard")
        expect(dashboard).to_be_visible()
        frame_label = dashboard.locator(".rr-frame")
        deadline = time.monotonic() + 30
        while (_npt(frame_label.inner_text()) or 0.0) < 3.0:
            assert time.monotonic() < deadline, f"not playing: {frame_label.inner_text()!r}"
            page.wait_for_timeout(200)
        expect(dashboard.locator("img.widget-image.rr-player")).to_be_visible()

        page.wait_for_timeout(40_000)  # the teacher talks for a while: the program plays on
        cut_at = _npt(frame_label.inner_text()) or 0.0
        assert cut_at > 40.0, frame_label.inner_text()
        dashboard.locator("button.rr-link-toggle").click()
        expect(dashboard.locator("button.rr-link-toggle")).to_contain_text("Link cut")
        # The interruption and the bookmark, as the page shows them; the whole session,
        # the cut and the verdict with it, stays on the timeline.
        timeline = dashboard.locator(".rr-timeline")
        expect(timeline).to_contain_text("interrupted")
        expect(timeline).to_contain_text("cut")
        expect(timeline).to_contain_text("PLAY lesson")
        expect(dashboard.locator(".rr-fields").last).to_contain_text("saved")
        resume = dashboard.locator("button.rr-resume").first
        expect(resume).to_contain_text("Resume at")
        placeholder = dashboard.locator("img.rr-after").get_attribute("src")

        resume.click()
        expect(dashboard.locator(".rr-verdict")).to_contain_text("skipped")
        after = dashboard.locator("img.widget-image.rr-after")
        expect(after).to_be_visible()
        deadline = time.monotonic() + 10
        while after.get_attribute("src") == placeholder:
            assert time.monotonic() < deadline, "the resumed frame never reached the page"
            page.wait_for_timeout(100)
        assert after.evaluate("img => img.complete && img.naturalWidth > 0")
        assert "nothing skipped" in dashboard.locator(".rr-verdict").inner_text()
        # Under the button too, where the class looks after pressing it.
        expect(dashboard.locator(".rr-resume-outcome")).to_contain_text("nothing skipped")
        # And the program plays on from the bookmark, past where the cut left it.
        deadline = time.monotonic() + 15
        while (_npt(frame_label.inner_text()) or 0.0) < cut_at + 3.0:
            assert time.monotonic() < deadline, f"not playing on: {frame_label.inner_text()!r}"
            page.wait_for_timeout(200)

        page.wait_for_timeout(1500)  # let the timeline and the picture move on a little
        page.locator(".jp-Notebook").click(position={"x": 5, "y": 5})  # command mode
        page.keyboard.press("Control+b")  # fold the file browser away: room for the dashboard
        dashboard.evaluate("el => el.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "lab_tour.png"))
        dashboard.screenshot(path=str(ARTIFACTS / "lab_tour_dashboard.png"))
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "lab_tour_failure.png"))
        raise
    finally:
        page.close()
