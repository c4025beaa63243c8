"""Recordings a PBX drops into a folder, taken for audit once they are complete (``contactcenter audit --watch``).

A PBX writes a call's recording while the call lasts (Asterisk's MixMonitor: one stereo file, or a pair of
mono files, one per leg) and may leave it open a moment after. A file is taken only when it is whole:

* its size and modification time have not changed for ``settle_s`` seconds (a writer that is still writing
  changes them; this is also all there is to go on when the PBX writes over a network share), and
* no process on this machine has it open (``/proc/*/fd``), which covers a writer that paused longer than
  ``settle_s`` (a call on hold, a buffer not yet flushed).

With leg suffixes, a pair is taken when both files are. Files that were there before the watch began are taken
too, so the recordings a PBX already has get the same QA; ``skip`` (e.g. "already stored") leaves out those
audited before, so a watcher that restarts does not audit everything again. A file taken is not taken again
unless it changes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from contactcenter.qa.audit import Target, find_recordings, pair_legs, target_files

#: Why a recording is not taken yet, as ``waiting`` reports it.
GROWING = "still being written (its size is changing)"
OPEN = "still open by a process (the writer has not closed it)"


@dataclass
class _Seen:
    signature: tuple[int, int]  # size, modification time (ns)
    since: float  # monotonic time the signature was first seen


def open_files() -> set[str]:
    """The files some process on this machine has open, as far as /proc shows (all of them, as root)."""
    opened: set[str] = set()
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return opened
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            descriptors = os.listdir(folder)
        except OSError:  # gone, or not ours to see
            continue
        for fd in descriptors:
            try:
                opened.add(os.readlink(f"{folder}/{fd}"))
            except OSError:
                continue
    return opened


class FolderWatch:
    """Polled by the caller (``scan``): the recordings in ``folders`` that have become complete since last time."""

    def __init__(
        self,
        folders: Sequence[Path],
        leg_suffixes: tuple[str, str] | None = None,
        settle_s: float = 10.0,
        skip: Callable[[Target], bool] | None = None,
        waiting: Callable[[Path, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folders = list(folders)
        self.leg_suffixes = leg_suffixes
        self.settle_s = settle_s
        self.skip = skip
        self.waiting = waiting  # told once each time a file starts waiting for a new reason
        self.clock = clock
        self._seen: dict[Path, _Seen] = {}
        self._taken: dict[Path, tuple[int, int]] = {}  # file → the signature it had when taken
        self._told: dict[Path, str] = {}

    def scan(self) -> list[Target]:
        """The recordings complete now and not taken before (nor skipped), in a stable order."""
        now = self.clock()
        present: dict[Path, tuple[int, int]] = {}
        for path in find_recordings(self.folders):
            try:
                stat = path.stat()
            except OSError:  # removed between listing and looking
                continue
            present[path] = (stat.st_size, stat.st_mtime_ns)
        for gone in (set(self._seen) | set(self._taken)) - set(present):  # moved away or deleted: forgotten
            self._seen.pop(gone, None)
            self._taken.pop(gone, None)
            self._told.pop(gone, None)
        settled: set[Path] = set()
        changed: set[Path] = set()  # seen to change since the last look: certainly still being written
        for path, signature in present.items():
            seen = self._seen.get(path)
            if seen is None or seen.signature != signature:
                self._seen[path] = _Seen(signature, now)
                if seen is not None:
                    changed.add(path)
            elif signature[0] > 0 and now - seen.since >= self.settle_s:
                settled.add(path)
        fresh = [p for p in present if self._taken.get(p) != present[p]]
        opened = open_files() if settled & set(fresh) else set()
        ready: list[Target] = []
        for target in pair_legs(sorted(fresh), self.leg_suffixes):
            files = target_files(target)
            if any(f not in settled for f in files):
                for file in files:
                    if file in changed:
                        self._tell(file, GROWING)
                continue
            still_open = [f for f in files if str(f.resolve()) in opened]
            if still_open:
                self._tell(still_open[0], OPEN)
                continue
            for file in files:
                self._taken[file] = present[file]
                self._told.pop(file, None)
            if self.skip is not None and self.skip(target):
                continue
            ready.append(target)
        return ready

    def _tell(self, path: Path, reason: str) -> None:
        if self.waiting is not None and self._told.get(path) != reason:
            self._told[path] = reason
            self.waiting(path, reason)
