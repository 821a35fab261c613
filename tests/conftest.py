"""Fixtures shared by the whole suite: the sample clips and a running streaming server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["pg_support"]  # the PostgreSQL fixtures: postgres_url, database

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "sample_media"
ARTIFACTS = ROOT / "artifacts"  # screenshots kept from browser tests (not committed)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Debian's Chromium, headless, with nothing reaching for the (closed) network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def require_system_tool(name: str, path: str | None = None) -> str:
    """A system program a test needs: skip without it on a user's machine, fail in CI."""
    found = path if path and Path(path).exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (Debian package: apt-get install {name})"
        if IN_CI:
            pytest.fail(message + "; .ci/run should have installed it")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The committed sample clips, regenerated when missing (as `make sample` does)."""
    from rtsp_resume.sample import main as make_samples

    if not (SAMPLE_DIR / "sample.mp4").exists() or not (SAMPLE_DIR / "sample_slices.mp4").exists():
        import argparse

        make_samples(argparse.Namespace(out=SAMPLE_DIR, missing_only=True))
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def lesson_dir(sample_dir: Path) -> Path:
    """The tour's ten-minute program, made when missing (as `make lab` does: a minute or so)."""
    from rtsp_resume.sample import main as make_samples

    if not (SAMPLE_DIR / "lesson" / "lesson.mp4").exists():
        import argparse

        make_samples(argparse.Namespace(out=SAMPLE_DIR, missing_only=True, lesson=True))
    return SAMPLE_DIR / "lesson"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    chromium = require_system_tool("chromium", "/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed (pip install playwright; no browser download)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def rtsp_server(sample_dir: Path) -> Iterator[object]:
    """A streaming server on a free loopback port serving the sample folder."""
    from rtsp_resume.server import ServerConfig, StreamingServer

    server = StreamingServer(sample_dir, ServerConfig(port=0)).start()
    try:
        yield server
    finally:
        server.stop()
