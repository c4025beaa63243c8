"""Speech tests run the real Vosk library on PyPI's Korean model (the Mandarin one cannot be had here): a rule
that must really fire bans words the Korean model really recognises in a clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contactcenter.audio.silence import SilenceGate
from contactcenter.records import UtteranceRecord
from contactcenter.speech.recognizer import LegRecognizer

THRESHOLD_DBFS, HANGOVER_MS = -45.0, 300  # the monitor's default silence gate
#: Korean particles and syllables the model puts in almost any transcript of Mandarin speech. Audio that went
#: through a sound card (the headset's microphone: PulseAudio at 48 kHz, resampled to the line's 8 kHz) is
#: recognised differently on every run (measured: no word in common between three runs of the same clip), so a
#: rule meant to fire on the microphone bans these: the test is of the chain microphone → recogniser → rule →
#: alert, and which words match is tested on text and on clips fed directly.
COMMON_WORDS = ["은", "는", "의", "을", "를", "이", "가", "으로", "하", "한", "했다", "이다", "에서"]


def words_recognised(model: object, audio: np.ndarray, rate: int = 8000) -> list[str]:
    """The words of two characters or more the model recognises in ``audio`` (16-bit mono at ``rate``),
    through the same silence gate as the monitor. A pooled recogniser may still vary a word, so tests ban
    several."""
    finals: list[UtteranceRecord] = []
    leg = LegRecognizer(model, "agent", rate, finals.append, gate=SilenceGate(THRESHOLD_DBFS, HANGOVER_MS // 20))
    leg.feed(audio.astype(np.int16).tobytes())
    leg.finish()
    return sorted({w.word for u in finals for w in u.words if len(w.word) >= 2})


def stand_in_rules(path: Path, words: list[str], *, required: bool = False) -> Path:
    """A rules file banning ``words`` (the stand-in for 服务禁语) and, with ``required``, requiring one of
    them in the first minute of calls taken (the stand-in for the greeting, so a checklist line ticks) and
    within 20 s before a hold (the stand-in for 请稍等: judged only on a call whose hold was marked)."""
    phrases = ", ".join(f'"{word}"' for word in words)
    text = (
        f'[[rules]]\nid = "banned_phrases"\ndescription = "服务禁语 (R4)"\nphrases = [{phrases}]\nnegate = true\n'
        'match = "exact"\nseverity = "critical"\nweight = 4\n'
    )
    if required:
        text += (
            f'\n[[rules]]\nid = "greeting"\ndescription = "开头问候 (R2)"\nwhen = "inbound"\nphrases = [{phrases}]\n'
            'match = "exact"\nwindow = "first:60"\nseverity = "major"\nweight = 2\n'
            f'\n[[rules]]\nid = "hold_request"\ndescription = "等待前说 请稍等 (R6)"\nphrases = [{phrases}]\n'
            'match = "exact"\nwindow = "before:hold_start:20"\nseverity = "minor"\nweight = 1\n'
        )
    path.write_text(text, encoding="utf-8")
    return path
