"""Waiting on a condition instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; its last value as a bool.

    Use it as ``assert wait_until(...)``: a condition that never comes true fails the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())
