"""The speech model manifest, verification of every file, and a checked download from a real HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from contactcenter.cli import cli
from contactcenter.speech.model_files import ModelError, ModelFile, ModelManifest, fetch_model, verify_model
from tests.helpers.paths import REPO

LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:91eda2c04c4f599361cb92b0e5298ccdf6b3c7a1fa52bfcefcd2c4e07aa1c131\nsize 15901896\n"
)
FILES = {"am/final.mdl": b"\x00\x01model-bytes" * 200, "conf/model.conf": b"--beam=12\n", "README": b"test\n"}


def manifest_for(files: dict[str, bytes], zip_bytes: bytes | None = None, url: str = "http://x") -> ModelManifest:
    return ModelManifest(
        name="tiny-model",
        url=url,
        zip_size=len(zip_bytes) if zip_bytes else None,
        zip_sha256_pattern=hashlib.sha256(zip_bytes).hexdigest() if zip_bytes else None,
        files=tuple(ModelFile(p, len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()),
    )


def write_model(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def zipped(files: dict[str, bytes], top: str = "tiny-model") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(f"{top}/{name}", content)
    return buffer.getvalue()


@pytest.fixture
def http_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A real HTTP server on loopback; put bytes in the dict under a path to serve them."""
    served: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()


def test_the_shipped_manifest_describes_the_mandarin_model() -> None:
    manifest = ModelManifest.load(REPO / "models" / "manifest.toml")
    assert manifest.name == "vosk-model-small-cn-0.22" and manifest.url.endswith(".zip")
    files = {f.path: f for f in manifest.files}
    assert files["am/final.mdl"].size == 15901896
    assert files["am/final.mdl"].sha256.startswith("91eda2c0")
    assert len(manifest.files) == 14


def test_a_good_model_verifies(tmp_path: Path) -> None:
    assert verify_model(write_model(tmp_path / "m", FILES), manifest_for(FILES)) == {}


def test_each_kind_of_bad_file_is_named(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", FILES)
    (folder / "am/final.mdl").write_bytes(LFS_POINTER)
    (folder / "conf/model.conf").write_bytes(b"--beam=1")
    (folder / "README").write_bytes(b"TEST\n")
    problems = verify_model(folder, manifest_for({**FILES, "graph/Gr.fst": b"fst"}))
    assert problems["am/final.mdl"].startswith("is a Git LFS pointer")
    assert problems["conf/model.conf"] == "truncated: 8 of 10 bytes"
    assert problems["README"].startswith("content does not match")
    assert problems["graph/Gr.fst"] == "missing"


def test_a_missing_model_folder(tmp_path: Path) -> None:
    problems = verify_model(tmp_path / "nothing", manifest_for(FILES))
    assert "does not exist" in problems["."] and "models fetch" in problems["."]


def test_fetch_downloads_unpacks_and_verifies(tmp_path: Path, http_server) -> None:
    base, served = http_server
    served["/tiny.zip"] = zipped(FILES)
    manifest = manifest_for(FILES, served["/tiny.zip"], url=f"{base}/tiny.zip")
    progress: list[int] = []
    installed = fetch_model(
        manifest, tmp_path / "models" / "tiny-model", progress=lambda done, total: progress.append(done)
    )
    assert verify_model(installed, manifest) == {}
    assert progress[-1] == len(served["/tiny.zip"])
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny-model"]  # no leftovers


def test_fetch_refuses_a_truncated_download_and_keeps_the_old_copy(tmp_path: Path, http_server) -> None:
    base, served = http_server
    good = zipped(FILES)
    served["/tiny.zip"] = good[: len(good) // 2]
    manifest = manifest_for(FILES, good, url=f"{base}/tiny.zip")
    old = write_model(tmp_path / "tiny-model", FILES)
    with pytest.raises(ModelError, match=r"truncated download: \d+ of \d+ bytes"):
        fetch_model(manifest, old)
    assert verify_model(old, manifest) == {}


def test_fetch_names_an_lfs_pointer(tmp_path: Path, http_server) -> None:
    base, served = http_server
    served["/tiny.zip"] = LFS_POINTER
    manifest = manifest_for(FILES, zipped(FILES), url=f"{base}/tiny.zip")
    with pytest.raises(ModelError, match="served a Git LFS pointer"):
        fetch_model(manifest, tmp_path / "tiny-model")
    assert not (tmp_path / "tiny-model").exists()


def test_fetch_refuses_a_zip_whose_files_do_not_match(tmp_path: Path, http_server) -> None:
    base, served = http_server
    served["/tiny.zip"] = zipped({**FILES, "README": b"TEST\n"})  # same size, other bytes
    manifest = manifest_for(FILES, url=f"{base}/tiny.zip")
    with pytest.raises(ModelError, match="README: content does not match"):
        fetch_model(manifest, tmp_path / "tiny-model")


def test_fetch_reports_an_unreachable_server(tmp_path: Path, http_server) -> None:
    base, _ = http_server
    with pytest.raises(ModelError, match=r"cannot download .*/absent\.zip"):
        fetch_model(manifest_for(FILES, url=f"{base}/absent.zip"), tmp_path / "tiny-model")


def test_models_verify_on_the_command_line(desk: Path, tmp_path: Path) -> None:
    folder = write_model(tmp_path / "copy", {"am/final.mdl": LFS_POINTER})
    result = CliRunner().invoke(cli, ["--settings", str(desk), "models", "verify", str(folder)])
    assert result.exit_code == 1
    assert "am/final.mdl: is a Git LFS pointer" in result.output and "graph/Gr.fst: missing" in result.output
