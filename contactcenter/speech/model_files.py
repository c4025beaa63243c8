"""The speech model on disk: its manifest, verification of every file, and a checked download.

A model that does not match its manifest is refused with the reason named: a missing file, a Git LFS
pointer where the file should be, a truncated file, or content that does not hash right.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import tempfile
import tomllib
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
CHUNK = 1 << 20


class ModelError(Exception):
    """The model cannot be used or fetched; the message names the path and what is wrong."""


@dataclass(frozen=True)
class ModelFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelManifest:
    name: str
    url: str
    zip_size: int | None
    zip_sha256_pattern: str | None
    files: tuple[ModelFile, ...]

    @classmethod
    def load(cls, path: Path) -> ModelManifest:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))["model"]
            return cls(
                name=data["name"],
                url=data["url"],
                zip_size=data.get("zip_size"),
                zip_sha256_pattern=data.get("zip_sha256_pattern"),
                files=tuple(ModelFile(f["path"], int(f["size"]), f["sha256"].lower()) for f in data["files"]),
            )
        except FileNotFoundError:
            raise ModelError(f"{path}: model manifest not found") from None
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: not a valid model manifest ({type(exc).__name__}: {exc})") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def is_lfs_pointer(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def check_file(path: Path, expected: ModelFile) -> str | None:
    """Why ``path`` is not the expected file, or None if it is."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != expected.size and size < 1024 and is_lfs_pointer(path):
        return f"is a Git LFS pointer ({size} bytes), not the {expected.size}-byte file: fetch the real file"
    if size < expected.size:
        return f"truncated: {size} of {expected.size} bytes"
    if size > expected.size:
        return f"wrong size: {size} bytes, expected {expected.size}"
    digest = sha256_of(path)
    if digest != expected.sha256:
        return f"content does not match: sha256 {digest}, expected {expected.sha256}"
    return None


def verify_model(model_dir: Path, manifest: ModelManifest) -> dict[str, str]:
    """Every problem with the model folder, as {relative path: reason}; empty when the model is good."""
    if not model_dir.is_dir():
        return {".": f"model folder {model_dir} does not exist (run: contactcenter models fetch)"}
    problems = {}
    for expected in manifest.files:
        reason = check_file(model_dir / expected.path, expected)
        if reason:
            problems[expected.path] = reason
    return problems


def _check_zip(zip_path: Path, manifest: ModelManifest) -> None:
    size = zip_path.stat().st_size
    if size < 1024 and is_lfs_pointer(zip_path):
        raise ModelError(f"{manifest.url} served a Git LFS pointer ({size} bytes), not the model zip")
    if manifest.zip_size is not None and size != manifest.zip_size:
        kind = "truncated download" if size < manifest.zip_size else "unexpected size"
        raise ModelError(f"{kind}: {size} of {manifest.zip_size} bytes from {manifest.url}")
    if manifest.zip_sha256_pattern and not fnmatch.fnmatch(sha256_of(zip_path), manifest.zip_sha256_pattern):
        raise ModelError(
            f"the zip from {manifest.url} does not hash as the manifest says ({manifest.zip_sha256_pattern})"
        )
    if not zipfile.is_zipfile(zip_path):
        raise ModelError(f"the download from {manifest.url} is not a zip file (truncated or an error page)")


def _model_root(extracted: Path, name: str) -> Path:
    """Zips carry the model in a folder named after it; accept a zip with the files at its top too."""
    inner = extracted / name
    return inner if inner.is_dir() else extracted


def fetch_model(
    manifest: ModelManifest,
    destination: Path,
    *,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download, unpack and verify the model into ``destination``; nothing is left behind on failure."""
    source = url or manifest.url
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".fetch-") as work:
        zip_path = Path(work) / f"{manifest.name}.zip"
        try:
            with urllib.request.urlopen(source, timeout=30) as response, zip_path.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or manifest.zip_size
                done = 0
                while block := response.read(CHUNK):
                    out.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except OSError as exc:
            raise ModelError(f"cannot download {source}: {exc}") from None
        _check_zip(zip_path, manifest)
        extracted = Path(work) / "unpacked"
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.namelist():
                target = (extracted / member).resolve()
                if not target.is_relative_to(extracted.resolve()):
                    raise ModelError(f"the zip from {source} has an unsafe path: {member}")
            archive.extractall(extracted)
        root = _model_root(extracted, manifest.name)
        problems = verify_model(root, manifest)
        if problems:
            lines = "; ".join(f"{path}: {reason}" for path, reason in problems.items())
            raise ModelError(f"the model from {source} does not match the manifest: {lines}")
        if destination.exists():
            shutil.rmtree(destination)
        shutil.move(str(root), destination)
    return destination
