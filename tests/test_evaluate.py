"""`contactcenter evaluate`: per-rule recall, precision and F1 against a reviewer's labels, with the misses and
false alarms. On transcripts it runs everywhere, without a speech model; on recordings it runs the audit's
recogniser (the Korean model for the mechanics, the Mandarin one where it is present)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import soundfile
from click.testing import CliRunner, Result

from contactcenter.cli import cli
from contactcenter.qa.audit import MIN_AUDIO_SECONDS
from contactcenter.qa.evaluation import (
    CallTranscript,
    evaluate,
    find_inputs,
    judge,
    read_labels,
    read_transcripts,
)
from contactcenter.records import UtteranceRecord
from contactcenter.speech.rules import load_rules
from contactcenter.speech.vosk_model import SpeechModel
from tests.helpers.korean import stand_in_rules, words_recognised
from tests.helpers.paths import REPO, SPEECH, speech_clip
from tests.helpers.settings import desk_settings, make_desk

COMPANY = "示例科技"

#: The rules measured here, fixed so that the figures do not move with the shipped rules file.
RULES = """
[[rules]]
id = "greeting"
phrases = ["您好"]
window = "first:10"

[[rules]]
id = "greeting_company"
phrases = ["{company}"]
window = "first:15"

[[rules]]
id = "banned_phrases"
phrases = ["喂", "我不知道", "不知道", "这不归我管", "不归我管"]
negate = true
severity = "critical"

[[rules]]
id = "hold_request"
phrases = ["请稍等", "请您稍等"]
window = "before:hold_start:20"

[[rules]]
id = "closing"
phrases = ["感谢您的来电"]
window = "last:40"
live = false

[[rules]]
id = "customer_hangs_up_first"
kind = "hangup_order"
"""

#: Five calls as JSON lines (c4 is in the TSV file below): what each one holds is in the labels' comments.
CALLS_JSONL = [
    # c1: greets, says a banned phrase at about 20.7 s, asks the customer to wait before the hold, closes
    {"call": "c1", "leg": "agent", "start": 0.5, "end": 3.0, "text": "您好，示例科技"},
    {"call": "c1", "leg": "customer", "start": 3.5, "end": 6.0, "text": "我的快递三天没到"},
    {"call": "c1", "leg": "agent", "start": 20.0, "end": 22.0, "text": "这个我不知道"},
    {"call": "c1", "leg": "agent", "start": 35.0, "end": 36.0, "text": "请您稍等"},
    {"call": "c1", "leg": "event", "start": 40.0, "text": "hold_start"},
    {"call": "c1", "leg": "event", "start": 60.0, "text": "hold_end"},
    {"call": "c1", "leg": "agent", "start": 90.0, "end": 92.0, "text": "感谢您的来电，再见"},
    # c2: answers with 喂 (banned: a false alarm, the reviewer let it pass), no greeting, no closing
    {"call": "c2", "leg": "agent", "start": 0.0, "end": 2.0, "text": "喂，哪位"},
    {"call": "c2", "leg": "agent", "start": 12.0, "end": 14.0, "text": "好的，再见"},
    # c3: greets only at 12 s (the machine says missing; the reviewer accepted it), a banned phrase at 29 s
    # that the reviewer timed at 50 s (too far: a miss there and a false alarm at 29 s)
    {"call": "c3", "leg": "agent", "start": 1.0, "end": 2.0, "text": "嗯"},
    {"call": "c3", "leg": "agent", "start": 12.0, "end": 14.0, "text": "您好，示例科技"},
    {"call": "c3", "leg": "agent", "start": 29.0, "end": 31.0, "text": "这不归我管啊"},
    {"call": "c3", "leg": "agent", "start": 48.0, "end": 50.0, "text": "请问还有别的问题吗"},
    # c5: nothing recognised at all (not checked: no verdict on anything)
    {"call": "c5", "leg": "event", "start": 30.0, "text": "end"},
    # c6: not labelled: its banned phrase counts for nothing
    {"call": "c6", "leg": "agent", "start": 1.0, "end": 2.0, "text": "我不知道"},
]
#: c4: the reviewer heard a banned phrase at 10 s; the transcript has none (and a cell a spreadsheet would run)
CALLS_TSV = "call\tleg\tstart\tend\ttext\nc4\tagent\t0.5\t2\t您好\nc4\tagent\t9\t10.5\t=1+1 我知道了\n"

LABELS = """call,rule,expected,time
c1,banned_phrases,violation,0:21
c1,greeting,satisfied,
c1,hold_request,satisfied,
c1,closing,satisfied,
c2,banned_phrases,satisfied,
c2,greeting,violation,
c2,hold_request,satisfied,
c2,closing,violation,
c3,greeting,satisfied,
c3,banned_phrases,violation,50
c4,banned_phrases,violation,10
c5,banned_phrases,violation,
c5,greeting,violation,
"""

#: rule: (labels, true positives, false alarms, misses, true negatives, no verdict, recall, precision, F1)
EXPECTED = {
    # found c1's; 喂 in c2 and c3's phrase at 29 s are false alarms; c3 (timed too far), c4 (not in the
    # transcript) and c5 (nothing heard) are misses
    "banned_phrases": (5, 1, 2, 3, 0, 1, 1 / 4, 1 / 3, 2 / 7),
    # c2 found, c5 missed (no verdict), c3's late greeting a false alarm, c1 right
    "greeting": (4, 1, 1, 1, 1, 1, 1 / 2, 1 / 2, 1 / 2),
    # c1 right; c2 had no hold, so no verdict: two labels, and still no figure
    "hold_request": (2, 0, 0, 0, 1, 1, None, None, None),
    "closing": (2, 1, 0, 0, 1, 0, 1.0, 1.0, 1.0),
    "greeting_company": (0, 0, 0, 0, 0, 0, None, None, None),  # no labels: no figures, never 100 %
    "customer_hangs_up_first": (0, 0, 0, 0, 0, 0, None, None, None),
    # all labels together
    "(all rules)": (13, 3, 3, 4, 3, 3, 3 / 7, 1 / 2, 6 / 13),
}


@pytest.fixture
def material(tmp_path: Path) -> dict[str, Path]:
    """The rules file, a folder of transcripts (JSON lines and TSV) and the labels, as a QA team writes them
    (the labels saved by Excel: UTF-8 with a BOM)."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    transcripts = tmp_path / "transcripts"
    transcripts.mkdir()
    (transcripts / "calls.jsonl").write_text(
        "\n".join(json.dumps(row, ensure_ascii=False) for row in CALLS_JSONL) + "\n", encoding="utf-8"
    )
    (transcripts / "c4.tsv").write_text(CALLS_TSV, encoding="utf-8")
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS, encoding="utf-8-sig")
    return {"rules": rules, "transcripts": transcripts, "labels": labels}


def run(args: list[str], tmp_path: Path, **env: str) -> Result:
    """The command in a fresh desk with no speech model: transcripts must not need one."""
    environment = {
        "CONTACTCENTER_SETTINGS": str(make_desk(tmp_path / "desk")),
        "CONTACTCENTER_DATABASE__URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CONTACTCENTER_SPEECH__MODEL_PATH": str(tmp_path / "no-model"),
        **env,
    }
    return CliRunner().invoke(cli, ["evaluate", *args], env=environment)


def test_figures_on_transcripts(material: dict[str, Path]) -> None:
    rules = load_rules(material["rules"], [COMPANY])
    labels = read_labels(material["labels"], rules)
    recordings, files = find_inputs([material["transcripts"]], exclude=[material["labels"]])
    assert recordings == [] and [f.name for f in files] == ["c4.tsv", "calls.jsonl"]
    calls = read_transcripts(files)
    assert sorted(calls) == ["c1", "c2", "c3", "c4", "c5", "c6"]
    result = evaluate(labels, {call: judge(t, rules) for call, t in calls.items()}, rules)
    assert (result.calls, result.labelled_calls) == (6, 5)
    by_rule = {f.rule_id: f for f in [*result.rules, result.total]}
    assert list(by_rule) == [rule.id for rule in rules.rules] + ["(all rules)"]
    for rule_id, (labelled, tp, fp, fn, tn, none, recall, precision, f1) in EXPECTED.items():
        got = by_rule[rule_id]
        counts = (got.labels, got.true_positives, got.false_alarms, got.misses, got.true_negatives, got.no_verdict)
        assert counts == (labelled, tp, fp, fn, tn, none), rule_id
        for name, value in (("recall", recall), ("precision", precision), ("f1", f1)):
            figure = getattr(got, name)
            assert figure == (None if value is None else pytest.approx(value)), (rule_id, name)

    problems = [(p.rule_id, p.kind, p.call, p.at_s, p.heard, p.matched, p.machine) for p in result.problems]
    assert problems == [
        ("greeting", "false alarm", "c3", 10.0, "嗯", "", "violation (missing)"),
        ("greeting", "miss", "c5", None, "", "", "no verdict (no_speech)"),
        ("banned_phrases", "false alarm", "c2", 0.0, "喂，哪位", "喂", "violation"),
        ("banned_phrases", "false alarm", "c3", 29.0, "这不归我管啊", "这不归我管", "violation"),
        ("banned_phrases", "miss", "c3", 50.0, "请问还有别的问题吗", "", "violation at 29.0s"),
        ("banned_phrases", "miss", "c4", 10.0, "=1+1 我知道了", "", "satisfied"),
        ("banned_phrases", "miss", "c5", None, "", "", "no verdict (no_speech)"),
    ]
    assert result.problems[0].label.endswith("labels.csv:10")  # the label's line, header included


def test_a_tolerance_wide_enough_finds_a_late_label(material: dict[str, Path]) -> None:
    """c3's reviewer wrote 50 s for the phrase said at 29 s: within 25 s it is the same violation."""
    rules = load_rules(material["rules"], [COMPANY])
    calls = read_transcripts(find_inputs([material["transcripts"]], [material["labels"]])[1])
    judged = {call: judge(t, rules) for call, t in calls.items()}
    banned = evaluate(read_labels(material["labels"], rules), judged, rules, tolerance_s=25)
    figures = next(f for f in banned.rules if f.rule_id == "banned_phrases")
    assert (figures.true_positives, figures.false_alarms, figures.misses) == (2, 1, 2)


def test_the_command_prints_table_json_and_csv(material: dict[str, Path], tmp_path: Path) -> None:
    args = [str(material["transcripts"]), "--labels", str(material["labels"]), "--rules", str(material["rules"])]
    as_json = run([*args, "--format", "json"], tmp_path)
    assert as_json.exit_code == 0, as_json.output
    assert as_json.stderr == ""
    rows = {row["rule"]: row for row in json.loads(as_json.stdout)}
    for rule_id, (labelled, tp, fp, fn, tn, none, recall, precision, f1) in EXPECTED.items():
        row = rows[rule_id]
        assert (row["labels"], row["true_positives"], row["false_alarms"], row["misses"]) == (labelled, tp, fp, fn)
        assert (row["true_negatives"], row["no_verdict"]) == (tn, none)
        for name, value in (("recall", recall), ("precision", precision), ("f1", f1)):
            assert row[name] == (None if value is None else round(value, 4)), (rule_id, name)
    assert [(p["kind"], p["call"], p["at_s"]) for p in rows["banned_phrases"]["problems"]] == [
        ("false alarm", "c2", 0.0),
        ("false alarm", "c3", 29.0),
        ("miss", "c3", 50.0),
        ("miss", "c4", 10.0),
        ("miss", "c5", None),
    ]

    as_csv = run([*args, "--format", "csv"], tmp_path)
    assert as_csv.exit_code == 0, as_csv.output
    figures_part, problems_part = as_csv.stdout.replace("\r\n", "\n").split("\n\n")  # an empty line between
    figures = list(csv.DictReader(io.StringIO(figures_part)))
    assert [row["rule"] for row in figures][-1] == "(all rules)"
    banned = next(row for row in figures if row["rule"] == "banned_phrases")
    assert (banned["recall"], banned["precision"], banned["f1"]) == ("0.25", "0.3333", "0.2857")
    assert next(row for row in figures if row["rule"] == "greeting_company")["recall"] == ""
    problems = list(csv.DictReader(io.StringIO(problems_part)))
    assert len(problems) == 7
    # what was heard is the caller's or recogniser's text: a spreadsheet must not run it
    assert next(row for row in problems if row["call"] == "c4")["heard"] == "'=1+1 我知道了"

    table = run(args, tmp_path, COLUMNS="200")
    assert table.exit_code == 0, table.output
    assert "5 labelled calls of 6, 13 labels" in table.stdout
    assert "25.0 %" in table.stdout and "28.6 %" in table.stdout and "misses and false alarms" in table.stdout
    assert "100.0 %" not in next(line for line in table.stdout.splitlines() if "greeting_company" in line)


@pytest.mark.parametrize(
    "labels, transcript, problem",
    [
        ("c1,greting,violation\n", None, "labels.csv:1: unknown rule 'greting' (did you mean 'greeting'?)"),
        ("call,rule,expected\nc1,greeting,maybe\n", None, "labels.csv:2: expected must be violation or satisfied"),
        ("c1,banned_phrases,violation,soon\n", None, "labels.csv:1: time 'soon' is not seconds"),
        ("c1,greeting,violation\nc9,greeting,violation\n", None, "labels.csv:2: call 'c9' is in none of"),
        ("c1,greeting,violation\nc1,greeting,satisfied\n", None, "labels.csv:2: call 'c1' rule 'greeting' is"),
        ("c1,customer_hangs_up_first,violation\n", None, "labels.csv:1: rule 'customer_hangs_up_first': record"),
        ("call,rule\nc1,greeting\n", None, "labels.csv:1: the header has no expected column"),
        ("", None, "labels.csv: no labels"),
        (
            "c1,greeting,violation\n",
            '{"call": "c1", "leg": "agnt", "start": 1, "end": 2, "text": "x"}',
            "t.jsonl:1: leg 'agnt'",
        ),
        (
            "c1,greeting,violation\n",
            '{"call": "c1", "leg": "agent", "start": 3, "end": 2, "text": "x"}',
            "t.jsonl:1: end 2 is before start 3",
        ),
        ("c1,greeting,violation\n", '\n{"call": "c1", "leg": "agent", "start": 1', "t.jsonl:2: not JSON"),
        (
            "c1,greeting,violation\n",
            '{"call": "c1", "leg": "event", "start": 1, "text": "lunch"}',
            "t.jsonl:1: event 'lunch'",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_line(
    material: dict[str, Path], tmp_path: Path, labels: str, transcript: str | None, problem: str
) -> None:
    labels_file = tmp_path / "bad" / "labels.csv"
    labels_file.parent.mkdir()
    labels_file.write_text(labels, encoding="utf-8")
    target = material["transcripts"] / "calls.jsonl"
    if transcript is not None:
        target = tmp_path / "bad" / "t.jsonl"
        target.write_text(transcript + "\n", encoding="utf-8")
    result = run([str(target), "--labels", str(labels_file), "--rules", str(material["rules"])], tmp_path)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: ") and problem in line, line
    assert str(tmp_path / "bad") in line  # the whole path, as given


def test_missing_files_and_a_bad_tsv_header(material: dict[str, Path], tmp_path: Path) -> None:
    rules = ["--rules", str(material["rules"])]
    cases = {
        "no such file": [str(material["transcripts"]), "--labels", str(tmp_path / "nothing.csv"), *rules],
        "no such file or folder": [str(tmp_path / "nowhere"), "--labels", str(material["labels"]), *rules],
        "no recordings or transcripts in": [str(tmp_path / "empty"), "--labels", str(material["labels"]), *rules],
        "a.tsv:1: the header (first line) has no leg, end column": [
            str(tmp_path / "a.tsv"),
            "--labels",
            str(material["labels"]),
            *rules,
        ],
    }
    (tmp_path / "empty").mkdir()
    (tmp_path / "a.tsv").write_text("call\tstart\ttext\nc1\t0\t您好\n", encoding="utf-8")
    for problem, args in cases.items():
        result = run(args, tmp_path)
        assert result.exit_code == 2 and problem in result.stderr, result.output
        assert len(result.stderr.splitlines()) == 1


# ------------------------------------------------------------------------------------------------ recordings


def test_recordings_with_the_korean_model(tmp_path: Path, korean_model_path: Path, korean_model: SpeechModel) -> None:
    """The mechanics on real audio: recordings recognised by the audit's code, judged, counted; an unreadable
    recording named and its labels left out (exit 1). Korean words stand in for the banned phrases."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    for name in ("r03", "r02"):
        shutil.copy(speech_clip(f"real8k/{name}.wav"), folder / f"{name}.wav")
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    heard = words_recognised(korean_model, soundfile.read(str(folder / "r03.wav"), dtype="int16")[0])
    in_r02 = set(words_recognised(korean_model, soundfile.read(str(folder / "r02.wav"), dtype="int16")[0]))
    rules = stand_in_rules(tmp_path / "rules.toml", [w for w in heard if w not in in_r02])
    labels = tmp_path / "labels.tsv"
    labels.write_text(
        "call\trule\texpected\nr03\tbanned_phrases\tviolation\nr02\tbanned_phrases\tsatisfied\n"
        "broken\tbanned_phrases\tviolation\n",
        encoding="utf-8",
    )
    result = run(
        [str(folder), "--labels", str(labels), "--rules", str(rules), "--format", "json"],
        tmp_path,
        CONTACTCENTER_SPEECH__MODEL_PATH=str(korean_model_path),
    )
    assert result.exit_code == 1, result.output  # one recording could not be read
    assert "broken.wav: not a readable recording" in result.stderr
    assert "1 labels not evaluated" in result.stderr
    [banned, total] = json.loads(result.stdout)
    assert banned["rule"] == "banned_phrases" and total["rule"] == "(all rules)"
    assert (banned["labels"], banned["true_positives"], banned["true_negatives"]) == (2, 1, 1)
    assert (banned["false_alarms"], banned["misses"], banned["recall"], banned["precision"]) == (0, 0, 1.0, 1.0)


def test_recordings_need_the_speech_model(material: dict[str, Path], tmp_path: Path) -> None:
    """Transcripts run without a model; a recording names the missing model, in one line."""
    (tmp_path / "c1.wav").write_bytes((SPEECH / "real8k" / "r01.wav").read_bytes())
    labels = tmp_path / "labels.csv"
    labels.write_text("c1,greeting,violation\n", encoding="utf-8")
    result = run([str(tmp_path / "c1.wav"), "--labels", str(labels), "--rules", str(material["rules"])], tmp_path)
    assert result.exit_code == 4
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {tmp_path / 'no-model'}: speech model folder does not exist"), line


# ------------------------------------------------------------------------------- with the Mandarin model


@pytest.fixture(scope="module")
def mandarin_model_path() -> Path:
    path = desk_settings(REPO / "settings.toml", "sqlite://").speech.model_path
    if not (path / "am" / "final.mdl").exists():
        pytest.skip(f"the Mandarin model is not at {path} (contactcenter models fetch; it cannot be had here)")
    return path


def labelled_clips() -> list[dict[str, str]]:
    """The Mandarin clips with a reference transcript (not "none found"), at telephone rate, long enough to be
    audited (r06 is 0.9 s: the audit refuses it, as it would a truncated call)."""
    with (SPEECH / "manifest.tsv").open(encoding="utf-8") as manifest:
        rows = list(csv.DictReader(manifest, delimiter="\t"))
    return [
        row
        for row in rows
        if row["file"].startswith(("real8k/", "synth8k/"))
        and not row["reference"].startswith("none found")
        and float(row["dur_s"]) >= MIN_AUDIO_SECONDS
    ]


@pytest.mark.mandarin
def test_the_mandarin_clips_against_their_transcripts(mandarin_model_path: Path, tmp_path: Path) -> None:
    """The labels are what the rules say of each clip's reference transcript (one agent utterance over the
    clip); the recordings are recognised with the Mandarin model and judged by the same rules, so what differs
    is what recognition costs, rule by rule."""
    rules_file = REPO / "scripts_zh" / "rules.toml"
    rules = load_rules(rules_file, desk_settings(REPO / "settings.toml", "sqlite://").company.names_said)
    phrase_rules = [rule.id for rule in rules.rules if rule.spec.kind == "phrase"]
    folder = tmp_path / "clips"
    folder.mkdir()
    labels: list[str] = ["call,rule,expected"]
    for clip in labelled_clips():
        shutil.copy(SPEECH / clip["file"], folder / f"{clip['id']}.wav")
        reference = UtteranceRecord(leg="agent", start_s=0.0, end_s=float(clip["dur_s"]), text=clip["reference"])
        truth = judge(CallTranscript(clip["id"], clip["file"], [reference], [], float(clip["dur_s"])), rules)
        for rule_id in phrase_rules:
            verdict = truth.result(rule_id)
            if verdict is not None:
                labels.append(f"{clip['id']},{rule_id},{'satisfied' if verdict.passed else 'violation'}")
    (tmp_path / "labels.csv").write_text("\n".join(labels) + "\n", encoding="utf-8")
    assert len(labels) > 40  # 21 clips, most with several rules

    result = run(
        [str(folder), "--labels", str(tmp_path / "labels.csv"), "--rules", str(rules_file), "--format", "json"],
        tmp_path,
        CONTACTCENTER_SPEECH__MODEL_PATH=str(mandarin_model_path),
    )
    assert result.exit_code == 0, result.output
    rows = {row["rule"]: row for row in json.loads(result.stdout)}
    for rule_id in phrase_rules:
        expected = [line for line in labels[1:] if line.split(",")[1] == rule_id]
        row = rows[rule_id]
        assert row["labels"] == len(expected)
        assert row["true_positives"] + row["misses"] == row["expected_violations"]
        assert row["false_alarms"] == sum(p["kind"] == "false alarm" for p in row["problems"])
    banned = rows["banned_phrases"]
    assert banned["expected_violations"] >= 5  # 我不知道, 不清楚, 这个不归我管, 这不可能, 我没办法 (synth8k)
    assert banned["recall"] is not None
    print(json.dumps({r: {k: rows[r][k] for k in ("labels", "recall", "precision", "f1")} for r in phrase_rules}))
