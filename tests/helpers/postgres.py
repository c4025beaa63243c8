"""A throwaway PostgreSQL cluster on a Unix socket (Debian's server binaries), for the test session.

Started as the ``postgres`` user when the tests run as root (initdb refuses root). If it cannot start, the
tests that need it fail with the reason: nothing is skipped silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers.ports import free_port


def _postgres_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if not candidates:
        pytest.fail("PostgreSQL server binaries not found: run ./setup.sh (it installs Debian's postgresql)")
    return Path(candidates[0]).parent


class PostgresServer:
    """A throwaway PostgreSQL cluster on a Unix socket; ``new_database()`` gives each test its own."""

    def __init__(self, root: Path) -> None:
        self.bin = _postgres_bin()
        self.root = root
        self.data = root / "data"
        self.socket_dir = root / "socket"
        self.port = free_port(socket.SOCK_STREAM)
        self.user = "contactcenter"
        self._as_postgres = os.geteuid() == 0  # initdb refuses to run as root

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"PostgreSQL {args[0]} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", self.user, "-E", "UTF8", "--no-locale")
        options = f"-k {self.socket_dir} -c listen_addresses='' -p {self.port} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=self.user, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
