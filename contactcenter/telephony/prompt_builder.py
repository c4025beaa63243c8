"""Stand-in prompts spoken by espeak-ng from the service script, until real recordings are made.

espeak-ng's Mandarin voice reads Chinese characters as English spelling; fed tone-numbered pinyin
(``cmn-latn-pinyin``) it speaks Mandarin, robotic but correct, naming the company from settings.toml. A
recorded prompt is never overwritten unless asked.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

from pypinyin import Style, lazy_pinyin

from contactcenter.settings import Settings

VOICE = "cmn-latn-pinyin"


class PromptBuildError(Exception):
    """Prompts could not be made; the message says why."""


def script_lines(settings: Settings) -> dict[str, str]:
    """The service script's lines with the company and department filled in."""
    data = tomllib.loads(settings.scripts.service_script.read_text(encoding="utf-8"))
    company = settings.company
    return {
        key: text.format(company=company.name, department=company.department)
        for key, text in data.get("lines", {}).items()
    }


def to_pinyin(text: str) -> str:
    return " ".join(lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, tone_sandhi=True))


def build_prompts(settings: Settings, force: bool = False) -> list[Path]:
    """Speak every line that has no recording yet; the files written."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise PromptBuildError("espeak-ng not found (install the Debian package: apt-get install espeak-ng)")
    written = []
    for key, text in script_lines(settings).items():
        target = settings.scripts.prompts_dir / f"{key}.wav"
        if target.exists() and not force:
            continue
        result = subprocess.run(
            [espeak, "-v", VOICE, "-s", "150", "-w", str(target), to_pinyin(text)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise PromptBuildError(f"espeak-ng failed for {key}: {result.stderr.strip()}")
        written.append(target)
    return written
