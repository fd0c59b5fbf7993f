"""PostgreSQL for tests: throw-away databases on the machine's server, and a private server
that a test may restart (never the machine's own, which other work shares)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def temp_database(admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A new empty database on the server of ``admin_url``, dropped afterwards; yields its URL."""
    import sqlalchemy as sa

    from storage import open_storage

    name = f"wavesearch_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        open_storage.cache_clear()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateServer:
    """A PostgreSQL server of our own (Debian's initdb + pg_ctl, run as the postgres user) on
    a free port under a temporary folder."""

    def __init__(self) -> None:
        self.bindir = Path(subprocess.check_output(["pg_config", "--bindir"], text=True).strip())
        self.root = Path(tempfile.mkdtemp(prefix="wavesearch-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        shutil.chown(self.root, "postgres")
        self._as_postgres([str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                           "-U", "postgres", "--no-sync"])
        self.start()

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, cmd: list[str]) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, cwd=self.root,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def _ctl(self, action: str, *extra: str) -> None:
        self._as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                           str(self.root / "log"), action, *extra])

    def start(self) -> None:
        self._ctl("start", "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                                 "-c fsync=off")

    def restart(self) -> None:
        """Stop the server (dropping every connection) and start it again."""
        self._ctl("restart", "-m", "fast", "-o", f"-p {self.port} -k {self.root} "
                                                 "-c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

