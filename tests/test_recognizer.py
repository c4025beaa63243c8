"""The recogniser on the real Vosk library and a real model (Korean, from PyPI: the Mandarin model cannot be
had here), fed real Mandarin recordings: streaming, word times, silence skipping, pooling, model errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from contactcenter.audio.silence import SilenceGate, frame_dbfs
from contactcenter.records import UtteranceRecord
from contactcenter.speech.recognizer import LegRecognizer
from contactcenter.speech.vosk_model import SpeechModel, SpeechModelError, check_model_folder
from tests.helpers.paths import speech_clip


def pcm(path: Path) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(str(path), dtype="int16")
    return samples, rate


def recognise(
    model: SpeechModel, samples: np.ndarray, rate: int, gate: SilenceGate | None = None, chunk_s: float = 0.02
) -> tuple[list[UtteranceRecord], list[tuple[str, float]], LegRecognizer]:
    finals: list[UtteranceRecord] = []
    partials: list[tuple[str, float]] = []
    leg = LegRecognizer(model, "agent", rate, finals.append, lambda _leg, text, at: partials.append((text, at)), gate)
    step = int(rate * chunk_s)
    for offset in range(0, len(samples), step):
        leg.feed(samples[offset : offset + step].astype("<i2").tobytes())
    leg.finish()
    return finals, partials, leg


def test_a_recording_streamed_in_20ms_frames_gives_timed_words(korean_model: SpeechModel) -> None:
    samples, rate = pcm(speech_clip("real8k/r03.wav"))
    finals, partials, leg = recognise(korean_model, samples, rate)
    assert finals and partials
    duration = len(samples) / rate
    words = [w for u in finals for w in u.words]
    assert len(words) >= 3
    assert all(0 <= w.start_s <= w.end_s <= duration + 0.05 for w in words)
    assert [w.start_s for w in words] == sorted(w.start_s for w in words)
    assert all(u.text.replace(" ", "") == "".join(w.word for w in u.words) for u in finals)
    assert leg.audio_seconds == pytest.approx(duration, abs=0.02)


def test_silence_is_skipped_and_times_still_match_the_call(korean_model: SpeechModel) -> None:
    clip, rate = pcm(speech_clip("real8k/r03.wav"))
    silence = np.zeros(int(3.0 * rate), dtype=np.int16)
    call = np.concatenate([silence, clip, silence, clip])
    finals, _, leg = recognise(korean_model, call, rate, SilenceGate(-45.0, hangover_frames=20))
    _, _, alone = recognise(korean_model, clip, rate, SilenceGate(-45.0, hangover_frames=20))
    pauses = alone.skipped_samples / rate  # quiet stretches inside the clip are skipped too
    assert 6.0 - 2 * 0.4 <= leg.skipped_samples / rate <= 6.0 + 2 * pauses + 0.05
    clip_s = len(clip) / rate
    speech = [(3.0, 3.0 + clip_s), (6.0 + clip_s, 6.0 + 2 * clip_s)]  # where the clips are in call time
    words = [w for u in finals for w in u.words]
    assert all(any(start - 0.05 <= w.start_s and w.end_s <= end + 0.05 for start, end in speech) for w in words), str(
        [(w.start_s, w.end_s) for w in words]
    ) + str(speech)
    assert all(any(start <= w.start_s <= end for w in words) for start, end in speech)  # words from both


def test_speech_followed_by_silence_is_finished_without_waiting(korean_model: SpeechModel) -> None:
    clip, rate = pcm(speech_clip("real8k/r02.wav"))
    call = np.concatenate([clip, np.zeros(int(2.0 * rate), dtype=np.int16)])
    finals: list[UtteranceRecord] = []
    leg = LegRecognizer(korean_model, "agent", rate, finals.append, gate=SilenceGate(-45.0, hangover_frames=15))
    fed_until_final = None
    step = int(rate * 0.02)
    for offset in range(0, len(call), step):
        leg.feed(call[offset : offset + step].tobytes())
        if finals and fed_until_final is None:
            fed_until_final = (offset + step) / rate
    assert fed_until_final is not None, "no final result before the leg ended"
    assert fed_until_final - finals[-1].end_s < 1.0  # the final came within a second of the speech ending
    leg.finish()


def test_any_sample_rate_from_a_file(korean_model: SpeechModel) -> None:
    samples, rate = pcm(speech_clip("real16k/r03.wav"))
    assert rate == 16000
    finals, _, _ = recognise(korean_model, samples, rate, chunk_s=0.2)
    assert finals and finals[-1].end_s <= len(samples) / rate + 0.05


def test_recognisers_are_pooled_and_reused_with_correct_times(korean_model: SpeechModel) -> None:
    samples, rate = pcm(speech_clip("real8k/r01.wav"))
    first, _, _ = recognise(korean_model, samples, rate)
    created = korean_model.created
    second, _, leg2 = recognise(korean_model, samples, rate)
    assert korean_model.created == created  # the warm recogniser came back from the pool
    assert leg2._origin > 0  # ... having decoded before: Vosk's times count from its creation
    assert [w.start_s for u in second for w in u.words][:1] == pytest.approx(
        [w.start_s for u in first for w in u.words][:1], abs=0.05
    )


def test_a_leg_holds_a_recogniser_only_while_someone_speaks(korean_model: SpeechModel) -> None:
    clip, rate = pcm(speech_clip("real8k/r03.wav"))
    finals: list[UtteranceRecord] = []
    leg = LegRecognizer(korean_model, "agent", rate, finals.append, gate=SilenceGate(-45.0, hangover_frames=15))
    leg.feed(np.concatenate([clip, np.zeros(rate, dtype=np.int16)]).tobytes())
    assert finals and leg._recognizer is None  # given back at the end of the utterance
    assert leg.committed_seconds == leg.audio_seconds
    leg.feed(clip[rate : 2 * rate].tobytes())  # in the middle of a sentence
    assert leg._recognizer is not None and leg.committed_seconds < leg.audio_seconds
    leg.finish()
    assert leg._recognizer is None


def test_audio_that_never_came_moves_the_call_clock_on(korean_model: SpeechModel) -> None:
    clip, rate = pcm(speech_clip("real8k/r03.wav"))
    finals: list[UtteranceRecord] = []
    leg = LegRecognizer(korean_model, "agent", rate, finals.append, gate=SilenceGate(-45.0, hangover_frames=15))
    leg.feed(clip[: len(clip) // 2].tobytes())
    leg.skip(10 * rate)  # dropped under overload: the utterance in progress ends where the audio stopped
    assert finals and finals[-1].end_s <= len(clip) / 2 / rate + 0.05
    before = len(finals)
    leg.feed(clip.tobytes())
    leg.finish()
    resumed = len(clip) // 2 / rate + 10
    assert len(finals) > before
    assert all(resumed - 0.05 <= u.start_s and u.end_s <= resumed + len(clip) / rate + 0.05 for u in finals[before:])
    assert leg.audio_seconds == pytest.approx(resumed + len(clip) / rate, abs=0.02)


def test_the_model_is_loaded_once(korean_model_path: Path, korean_model: SpeechModel) -> None:
    assert SpeechModel.load(korean_model_path) is korean_model


def test_a_smaller_decoder_chunk_shows_words_sooner_and_leaves_the_model_alone(
    korean_model_path: Path, korean_model: SpeechModel
) -> None:
    """[speech] decoder_frames_per_chunk: partial results advance in smaller steps of audio (call time, not
    wall time: this is the decoder's arithmetic, the same on any machine), the leg is still recognised whole,
    and the model's own folder is not written to. (The words differ somewhat: the online i-vector is updated
    per chunk; whether that costs accuracy is for ``contactcenter evaluate`` on the Mandarin model.)"""
    conf = korean_model_path / "conf" / "model.conf"
    before = (conf.read_bytes(), conf.stat().st_mtime_ns)
    small = SpeechModel.load(korean_model_path, 6)
    assert small is not korean_model and SpeechModel.load(korean_model_path, 6) is small
    assert (conf.read_bytes(), conf.stat().st_mtime_ns) == before
    samples, rate = pcm(speech_clip("real8k/r03.wav"))

    def partial_steps(model: SpeechModel) -> tuple[list[float], list[UtteranceRecord]]:
        finals, partials, _ = recognise(model, samples, rate)
        changes = [
            at for (text, at), (before, _) in zip(partials, [("", 0.0), *partials], strict=False) if text != before
        ]
        return changes, finals

    default_steps, _ = partial_steps(korean_model)
    small_steps, finals = partial_steps(small)
    assert len(small_steps) > len(default_steps)  # the hypothesis is updated more often ...
    assert small_steps[0] < default_steps[0]  # ... and the first words are seen earlier in the audio
    words = [w for u in finals for w in u.words]
    assert words and words[0].start_s < 1.0 and words[-1].end_s > len(samples) / rate - 1.0


def test_frame_levels() -> None:
    assert frame_dbfs(np.zeros(160, dtype=np.int16)) == float("-inf")
    full = np.full(160, 32767, dtype=np.int16)
    assert frame_dbfs(full) == pytest.approx(0.0, abs=0.01)
    gate = SilenceGate(-40.0, hangover_frames=2)
    quiet, loud = np.full(160, 10, dtype=np.int16), np.full(160, 3000, dtype=np.int16)
    assert [gate.admit(f) for f in (quiet, loud, quiet, quiet, quiet)] == [False, True, True, True, False]


# ------------------------------------------------------------------------------------------ bad models


def test_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpeechModelError, match=r"does not exist .*models fetch"):
        SpeechModel.load(tmp_path / "vosk-model-small-cn-0.22")


def test_a_folder_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "model.conf").write_text("--beam=10\n")
    with pytest.raises(SpeechModelError, match=r"not a Vosk model folder \(missing am/final.mdl\)"):
        check_model_folder(tmp_path)


def model_copy(source: Path, target: Path) -> Path:
    """A copy of a model folder made of symbolic links, so one file can be replaced cheaply."""
    for path in source.rglob("*"):
        if path.is_file():
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(source)).symlink_to(path)
    return target


def test_a_git_lfs_pointer_is_named(korean_model_path: Path, tmp_path: Path) -> None:
    copy = model_copy(korean_model_path, tmp_path / "model")
    (copy / "am" / "final.mdl").unlink()
    (copy / "am" / "final.mdl").write_bytes(
        b"version https://git-lfs.github.com/spec/v1\noid sha256:91ed\nsize 15901896\n"
    )
    with pytest.raises(SpeechModelError, match=r"am/final\.mdl is a Git LFS pointer"):
        SpeechModel.load(copy)


def test_a_corrupt_model_file_is_reported_by_vosk_path(korean_model_path: Path, tmp_path: Path) -> None:
    copy = model_copy(korean_model_path, tmp_path / "model")
    original = (copy / "am" / "final.mdl").resolve()
    (copy / "am" / "final.mdl").unlink()
    with original.open("rb") as source, (copy / "am" / "final.mdl").open("wb") as target:
        target.write(source.read(4096))  # truncated
    with pytest.raises(SpeechModelError, match=r"Vosk could not load the model .*models verify"):
        SpeechModel.load(copy)
