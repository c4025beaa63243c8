"""The Vosk model: loaded once per process, checked first so a bad copy gets a clear error, and a pool of
warm recognisers (a new KaldiRecognizer is slow for its first seconds: ../shared/reference/VOSK_PERFORMANCE.md).

A recogniser is lent for one utterance at a time (:class:`~contactcenter.speech.recognizer.LegRecognizer`
ends each with ``FinalResult``, after which Vosk starts the next with fresh features), so legs that are not
speaking hold none. A recogniser's memory grows with the audio it decodes (its own lazily expanded copy of
the decoding graph: ~130 MB after 30 s of real speech on the Korean model, ~240 MB after 5 minutes, with
no Vosk or Kaldi setting to bound it), so whoever owns the pool may say through :attr:`SpeechModel.keep`
which released recognisers stay warm; the others are freed, and a fresh one is made when next needed.

``frames_per_chunk`` (``[speech] decoder_frames_per_chunk``) sets how many feature frames Vosk's decoder
waits for before it computes the network's output: its partial results advance in steps of that much audio,
so it bounds how soon a word said mid-utterance can be seen (recognizer.py has the measurements). Vosk reads
it only from the model's ``conf/model.conf``, so the model is loaded through a scratch folder of links to
the model's files with that one line changed; the model's own folder is never written to.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
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

    _loaded: ClassVar[dict[tuple[Path, int], SpeechModel]] = {}  # one per folder and chunk, for the whole process
    _load_lock = threading.Lock()

    def __init__(self, path: Path, model: object) -> None:
        self.path = path
        self.model = model
        self._pool: dict[int, list[tuple[Recognizer, int]]] = {}
        self._pool_lock = threading.Lock()
        #: Whether a released recogniser that has been fed this many samples stays warm in the pool (None:
        #: always, up to POOL_PER_RATE); the process workers set it from their memory budget.
        self.keep: Callable[[int], bool] | None = None
        self.created = 0  # recognisers made (a fresh one is slow for its first seconds)
        self.retired = 0  # recognisers freed on release to bound memory

    @classmethod
    def load(cls, path: Path, frames_per_chunk: int = 0) -> SpeechModel:
        """The model in ``path`` (loaded once per process); ``frames_per_chunk`` > 0 overrides the decoder's."""
        path = Path(path).resolve()
        key = (path, frames_per_chunk)
        with cls._load_lock:
            if key not in cls._loaded:
                check_model_folder(path)
                import vosk

                vosk.SetLogLevel(-1)
                scratch = _with_frames_per_chunk(path, frames_per_chunk) if frames_per_chunk else None
                try:
                    model = vosk.Model(str(scratch or path))
                except Exception as exc:
                    raise SpeechModelError(
                        f"{path}: Vosk could not load the model ({exc}); a file is corrupt "
                        "or truncated: check it with contactcenter models verify"
                    ) from None
                finally:
                    if scratch is not None:  # Vosk has read everything it needs by now
                        shutil.rmtree(scratch.parent, ignore_errors=True)
                cls._loaded[key] = cls(path, model)
                log.info(
                    "speech model loaded from %s%s",
                    path,
                    f" (decoder chunk {frames_per_chunk} frames)" if frames_per_chunk else "",
                )
            return cls._loaded[key]

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
        # partial results from the best path up to the last frame decoded: with partial words on, Vosk takes
        # them from the incrementally determinised lattice instead, which lags the audio by about a second
        # (bench/speech_bench.py: a word mid-utterance reached rule_hit 1.6 s after it ended, 0.5 s without)
        recognizer.SetPartialWords(False)
        with self._pool_lock:
            self.created += 1
        return recognizer, 0

    def release(self, rate: int, recognizer: Recognizer, samples_fed: int) -> None:
        """Give back a recogniser whose last call was ``FinalResult`` (Vosk then starts its next utterance with
        fresh features, whoever speaks it): kept warm for the next utterance, or freed if :attr:`keep` says so."""
        keep = self.keep is None or self.keep(samples_fed)
        with self._pool_lock:
            pool = self._pool.setdefault(rate, [])
            if keep and len(pool) < POOL_PER_RATE:
                pool.append((recognizer, samples_fed))
            else:
                self.retired += 1
        # a recogniser not pooled is freed here, as its last reference goes

    @property
    def idle(self) -> int:
        """Recognisers waiting in the pool."""
        with self._pool_lock:
            return sum(len(pool) for pool in self._pool.values())

    def drop_idle(self) -> int:
        """Free every pooled recogniser (memory over budget); how many were freed."""
        with self._pool_lock:
            count = sum(len(pool) for pool in self._pool.values())
            self._pool = {}
            self.retired += count
        return count

    def forget_pool(self) -> list[tuple[Recognizer, int]]:
        """Empty the pool without freeing it (a forked worker leaves its parent's recognisers untouched, so
        their pages stay shared); the entries, for the caller to keep referenced."""
        with self._pool_lock:
            inherited = [entry for pool in self._pool.values() for entry in pool]
            self._pool = {}
        return inherited


def _with_frames_per_chunk(path: Path, frames_per_chunk: int) -> Path:
    """A scratch folder that reads as the model in ``path`` with ``--frames-per-chunk`` set: links to every
    file of the model, and its own copy of ``conf/model.conf`` with that option replaced or added."""
    scratch = Path(tempfile.mkdtemp(prefix="vosk-model-")) / path.name
    scratch.mkdir()
    for entry in path.iterdir():
        if entry.name != "conf":
            (scratch / entry.name).symlink_to(entry)
    (scratch / "conf").mkdir()
    conf = path / "conf"
    for entry in conf.iterdir() if conf.is_dir() else ():
        if entry.name != "model.conf":
            (scratch / "conf" / entry.name).symlink_to(entry)
    own = conf / "model.conf"  # a model without one decodes on Vosk's defaults: the option alone then
    lines = [
        line
        for line in (own.read_text(encoding="utf-8").splitlines() if own.is_file() else [])
        if not line.strip().startswith("--frames-per-chunk")
    ]
    lines.append(f"--frames-per-chunk={frames_per_chunk}")
    (scratch / "conf" / "model.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return scratch
