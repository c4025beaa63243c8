"""One vocabulary: every code the desk stores has one Chinese name, from scripts_zh/vocabulary.toml, and a
broken file is a one-line settings error."""

from __future__ import annotations

import tomllib
import typing
from pathlib import Path

import pytest
from click.testing import CliRunner

from contactcenter.cli import cli
from contactcenter.records import CHECK_LABELS, Direction, HitKind, Leg, Severity
from contactcenter.storage.models import AGENT_STATES, CALLBACK_KINDS, CALLBACK_STATES, WEB_ROLES
from contactcenter.vocabulary import KINDS, Vocabulary, VocabularyError
from tests.helpers.paths import REPO

VOCABULARY = REPO / "scripts_zh" / "vocabulary.toml"


@pytest.fixture(scope="module")
def names() -> Vocabulary:
    return Vocabulary.load(VOCABULARY)


CODES: dict[str, tuple[str, ...]] = {
    "severity": typing.get_args(Severity),
    "finding": typing.get_args(HitKind),
    "direction": typing.get_args(Direction),
    "leg": typing.get_args(Leg),
    "hung_up_first": ("customer", "agent", "system"),
    "check": tuple(CHECK_LABELS),
    "callback_state": CALLBACK_STATES,
    "callback_kind": CALLBACK_KINDS,
    "agent_state": AGENT_STATES,
    "role": WEB_ROLES,
    "ticket_status": ("open", "in_progress", "resolved", "closed"),
    "ticket_priority": ("low", "normal", "high", "urgent"),
    "disposition": ("completed", "abandoned", "in_progress", "recording", "overflow"),
}


@pytest.mark.parametrize("kind", sorted(CODES))
def test_every_stored_code_has_a_chinese_name(names: Vocabulary, kind: str) -> None:
    for code in CODES[kind]:
        name = names.name(kind, code)
        assert name != code and not name.isascii(), f"[{kind}] {code} has no Chinese name"


def test_one_name_per_severity_and_no_two_codes_share_a_name(names: Vocabulary) -> None:
    for kind in KINDS:
        table = names.names(kind)
        assert len(set(table.values())) == len(table), f"[{kind}] gives two codes the same name"
    assert names.names("severity") == {"critical": "致命", "major": "严重", "minor": "轻微", "info": "提示"}


def test_survey_questions_are_named_as_the_survey_script_names_them(names: Vocabulary) -> None:
    survey = tomllib.loads((REPO / "scripts_zh" / "survey.toml").read_text(encoding="utf-8"))
    for question in survey["questions"]:
        assert names.name("survey_question", question["key"]) == question["topic"]


def test_rules_are_named_by_their_description_and_unknown_codes_show_as_stored(names: Vocabulary) -> None:
    named = names.with_rules({"banned_phrases": "服务禁语", "bare": ""})
    assert named.name("rule", "banned_phrases") == "服务禁语"
    assert named.name("rule", "bare") == "bare"  # no description: the id, not a blank
    assert named.name("disposition", "brand_new") == "brand_new"
    assert named.name("severity", None) == named.name("severity", "") == ""


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[severity]\ncritical = '致命'\n", "no table for"),
        ("[severity\n", "Expected"),
        ("\n".join(f"[{k}]\nx = ''" for k in KINDS), "must map codes to non-empty names"),
    ],
)
def test_a_broken_vocabulary_is_refused_with_the_file_named(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "vocabulary.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VocabularyError, match=says) as caught:
        Vocabulary.load(path)
    assert str(path) in str(caught.value)


def test_the_command_line_reports_a_broken_vocabulary_in_one_line(desk: Path) -> None:
    env = {"CONTACTCENTER_SETTINGS": str(desk)}
    assert CliRunner().invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    (desk.parent / "scripts_zh" / "vocabulary.toml").write_text("[severity]\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["customers", "show", "13800138000"], env=env)
    assert result.exit_code == 2, result.output
    assert "no table for" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
