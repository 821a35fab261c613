"""A real PostgreSQL server for the tests, started from Debian's `postgresql` package.

One server per test session, in a temporary folder, on a free loopback port; each test that
asks for a database gets a fresh one (``CREATE DATABASE``), so tests never see each other's
rows. initdb refuses to run as root, so as root the cluster belongs to the `postgres` user
the package creates. On a user's machine without the package the tests skip; in CI they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IN_CI


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _missing(message: str) -> None:
    if IN_CI:
        pytest.fail(message + "; .ci/run should have installed it")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl in a folder of its own; :meth:`database` makes an empty database."""

    def __init__(self, folder: Path) -> None:
        initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if initdb is None or self.pg_ctl is None:
            _missing("PostgreSQL is not installed (Debian package: apt-get install postgresql)")
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(folder, "postgres")
        self._run([initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--no-instructions"])
        # fsync off: these tests check the portal's rules, not the disk; the portal's own
        # durability is tested with SQLite and kill -9.
        options = (f"-p {self.port} -k {folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=200")
        self._run([self.pg_ctl, "-D", str(self.data), "-o", options, "-l",
                   str(folder / "log"), "-w", "-t", "60", "start"])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, command: list[str]) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True,
                       cwd=self.folder, timeout=120)

    def database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.pg_ctl), "-D", str(self.data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[postgres]')")
    folder = Path(tempfile.mkdtemp(prefix="rtsp-resume-pg-"))
    os.chmod(folder, 0o755)
    cluster = PostgresCluster(folder)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh PostgreSQL database for one test."""
    return postgres_cluster.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """The portal's database URL, once per backend: None (the default, SQLite in the data
    folder) or a fresh PostgreSQL database."""
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
