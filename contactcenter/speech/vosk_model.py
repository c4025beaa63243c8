"""The Vosk model: loaded once per process, checked first so a bad copy gets a clear error, and a pool of
warm recognisers (a new KaldiRecognizer is slow for its first seconds: ../shared/reference/VOSK_PERFORMANCE.md).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import ClassVar, Protocol

from contactcenter.speech.model_files import is_lfs_pointer

log = logging.getLogger(__name__)

#: The files a Vosk model folder cannot do without, and the large ones a Git LFS checkout leaves as pointers.
REQUIRED = ("am/final.mdl", "conf/model.conf")
LARGE = ("am/final.mdl", "graph/Gr.fst", "graph/HCLr.fst", "graph/HCLG.fst", "ivector/final.ie", "rescore/G.fst")
POOL_PER_RATE = 16


class Recognizer(Protocol):
    """What the desk uses of a ``vosk.KaldiRecognizer`` (Vosk ships no type information)."""

    def AcceptWaveform(self, data: bytes) -> int: ...
    def Result(self) -> str: ...
    def PartialResult(self) -> str: ...
    def FinalResult(self) -> str: ...
    def Reset(self) -> None: ...


class SpeechModelError(Exception):
    """The speech model cannot be used; the message names the path and what is wrong."""


def check_model_folder(path: Path) -> None:
    """Refuse, with the reason, a folder that is not a loadable model, before Vosk crashes on it."""
    if not path.exists():
        raise SpeechModelError(f"{path}: speech model folder does not exist (run: contactcenter models fetch)")
    if not path.is_dir():
        raise SpeechModelError(f"{path}: expected the speech model folder, found a file")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise SpeechModelError(f"{path}: not a Vosk model folder (missing {', '.join(missing)})")
    pointers = [
        name
        for name in LARGE
        if (path / name).is_file() and (path / name).stat().st_size < 1024 and is_lfs_pointer(path / name)
    ]
    if pointers:
        raise SpeechModelError(
            f"{path}: {', '.join(pointers)} is a Git LFS pointer, not the model file "
            "(fetch the real model: contactcenter models fetch)"
        )


class SpeechModel:
    """A loaded ``vosk.Model`` and its recogniser pool. Use :meth:`load`: one instance per folder."""

    _loaded: ClassVar[dict[Path, SpeechModel]] = {}  # one per folder, for the whole process
    _load_lock = threading.Lock()

    def __init__(self, path: Path, model: object) -> None:
        self.path = path
        self.model = model
        self._pool: dict[int, list[tuple[Recognizer, int]]] = {}
        self._pool_lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> SpeechModel:
        path = Path(path).resolve()
        with cls._load_lock:
            if path not in cls._loaded:
                check_model_folder(path)
                import vosk

                vosk.SetLogLevel(-1)
                try:
                    model = vosk.Model(str(path))
                except Exception as exc:
                    raise SpeechModelError(
                        f"{path}: Vosk could not load the model ({exc}); a file is corrupt "
                        "or truncated: check it with contactcenter models verify"
                    ) from None
                cls._loaded[path] = cls(path, model)
                log.info("speech model loaded from %s", path)
            return cls._loaded[path]

    def acquire(self, rate: int) -> tuple[Recognizer, int]:
        """A recogniser for ``rate`` Hz and the samples it has already been fed (Vosk's times count from
        the recogniser's creation, across resets)."""
        with self._pool_lock:
            pool = self._pool.get(rate)
            if pool:
                return pool.pop()
        import vosk

        recognizer = vosk.KaldiRecognizer(self.model, rate)
        recognizer.SetWords(True)
        recognizer.SetPartialWords(True)
        return recognizer, 0

    def release(self, rate: int, recognizer: Recognizer, samples_fed: int) -> None:
        """Give a recogniser back, reset, for the next call (it stays warm)."""
        recognizer.Reset()
        with self._pool_lock:
            pool = self._pool.setdefault(rate, [])
            if len(pool) < POOL_PER_RATE:
                pool.append((recognizer, samples_fed))
