"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp folder, on 127.0.0.1.

Uses Debian's /usr/lib/postgresql/<version>/bin (package `postgresql`, which .ci/run
installs). PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
system user the package creates (or `nobody`), in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

DB_USER = "optuna"


class PostgresUnavailable(RuntimeError):
    """No server could be started here; the message says why."""


@dataclass
class PostgresServer:
    root: Path
    port: int
    bin_dir: Path
    run_as: str | None

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{DB_USER}@127.0.0.1:{self.port}/{database}"

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def create_database(self, name: str) -> str:
        """A fresh, empty database; returns its postgresql:// URL."""
        import psycopg

        with psycopg.connect(self.url()) as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(
            self._command(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate"
            )
            + ["stop"],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: Path(p).parts)
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
            "apt-get install postgresql)"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a postgres nor a nobody user exists")


def start_postgres(root: Path) -> PostgresServer:
    """Start a server whose data, socket and log live in `root` (created, then owned by the
    server's user); raises PostgresUnavailable with the reason when it cannot."""
    bin_dir = _bin_dir()
    run_as = _unprivileged_user()
    root.mkdir(parents=True, exist_ok=True)
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    root.chmod(0o700)
    server = PostgresServer(root=root, port=_free_port(), bin_dir=bin_dir, run_as=run_as)
    steps = [
        [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", DB_USER, "-A", "trust"]
        + ["-E", "UTF8", "--no-sync"],
        [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log")]
        + ["-w", "-t", "60", "-o"]
        + [f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
    ]
    for step in steps:
        result = subprocess.run(server._command(*step), capture_output=True, text=True)
        if result.returncode != 0:
            log = root / "server.log"
            detail = (result.stderr or result.stdout).strip().splitlines()
            if log.exists():
                detail += log.read_text().strip().splitlines()[-3:]
            server.stop()
            raise PostgresUnavailable(
                f"{Path(step[0]).name} failed: {' | '.join(detail[-4:]) or 'no output'}"
            )
    return server
