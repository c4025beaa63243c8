"""The survey on the line: prompts played, keys 1-5 collected, with invalid-key and timeout handling.

As in the IVR post-call surveys of Webex Contact Center and Newfies-Dialer: each question may be tried
``retries`` more times after an invalid key or silence, with the matching prompt; after the last try the
remaining questions are skipped and the thank-you plays. A key pressed while a prompt plays cuts it short
(barge-in). The customer may hang up at any time; what was answered is kept.
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from contactcenter.hooks.api import (
    Line,  # what the survey needs of a call: play, keys, ended
)

VALID_KEYS = "12345"
POLL_SECONDS = 0.05
Outcome = Literal["answered", "invalid", "timeout", "skipped", "hung_up"]


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=64)
    prompt: str
    topic: str = ""


class SurveyScript(BaseModel):
    """scripts_zh/survey.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intro: str
    thanks: str
    invalid: str
    timeout: str
    answer_seconds: float = Field(default=6.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=5)
    questions: list[Question] = Field(min_length=1)

    @classmethod
    def load(cls, path: Path) -> SurveyScript:
        return cls.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))


class PromptSource(Protocol):
    def line_audio(self, key: str) -> bytes | None: ...


@dataclass
class Answer:
    question: str
    value: int | None
    outcome: Outcome
    tries: int


@dataclass
class SurveyResult:
    answers: list[Answer] = field(default_factory=list)
    hung_up: bool = False

    @property
    def completed(self) -> bool:
        return not self.hung_up and all(a.outcome == "answered" for a in self.answers)

    @property
    def responded(self) -> bool:
        return any(a.outcome == "answered" for a in self.answers)


class SurveyRun:
    def __init__(self, line: Line, script: SurveyScript, prompts: PromptSource) -> None:
        self.line = line
        self.script = script
        self.prompts = prompts

    def _play(self, key: str) -> None:
        audio = self.prompts.line_audio(key)
        if audio:
            self.line.play(audio)

    def _wait_played(self) -> None:
        while self.line.playing_seconds() > 0 and not self.line.ended.is_set():
            time.sleep(POLL_SECONDS)

    def _key(self, seconds_after_prompt: float) -> str:
        """The first key pressed during the prompt or within ``seconds_after_prompt`` after it; "" if none."""
        deadline: float | None = None
        while not self.line.ended.is_set():
            digits = self.line.read_dtmf()
            if digits:
                self.line.stop_playing()
                return digits[0]
            if self.line.playing_seconds() <= 0:
                deadline = deadline or time.monotonic() + seconds_after_prompt
                if time.monotonic() >= deadline:
                    return ""
            time.sleep(POLL_SECONDS)
        return ""

    def run(self) -> SurveyResult:
        result = SurveyResult()
        self.line.read_dtmf()  # keys pressed before the survey began are not answers
        self._play(self.script.intro)
        for number, question in enumerate(self.script.questions):
            answer = self._ask(question)
            result.answers.append(answer)
            if answer.outcome == "hung_up":
                result.hung_up = True
                result.answers += [Answer(q.key, None, "hung_up", 0) for q in self.script.questions[number + 1 :]]
                return result
            if answer.outcome != "answered":  # tries used up: skip the rest, thank and go
                result.answers += [Answer(q.key, None, "skipped", 0) for q in self.script.questions[number + 1 :]]
                break
        self._play(self.script.thanks)
        self._wait_played()
        result.hung_up = self.line.ended.is_set()
        return result

    def _ask(self, question: Question) -> Answer:
        outcome: Outcome = "timeout"
        for attempt in range(1, self.script.retries + 2):
            self._play(question.prompt)
            key = self._key(self.script.answer_seconds)
            if self.line.ended.is_set():
                return Answer(question.key, None, "hung_up", attempt)
            if key and key in VALID_KEYS:
                return Answer(question.key, int(key), "answered", attempt)
            outcome = "invalid" if key else "timeout"
            if attempt <= self.script.retries:
                self._play(self.script.invalid if key else self.script.timeout)
        return Answer(question.key, None, outcome, self.script.retries + 1)
