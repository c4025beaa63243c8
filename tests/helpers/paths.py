"""Where things are: the checkout, the shared test material beside it (../shared), its speech clips."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SPEECH = SHARED / "speech"


def speech_clip(name: str) -> Path:
    """A clip from ../shared/speech; the tests fail with the reason if shared/ is not beside the checkout."""
    path = SPEECH / name
    if not path.exists():
        pytest.fail(f"{path} is missing: the test data lives in ../shared beside the checkout")
    return path
