"""The shared file helpers: whole-or-nothing writes, content hashes, the cache folder."""

import hashlib

import pytest

from rgbir.files import atomic_write, cache_dir, file_sha256


def test_atomic_write_replaces_whole_and_keeps_the_old_file_when_it_fails(tmp_path):
    path = tmp_path / "sub" / "a.json"
    atomic_write(path, "old")  # the folder is made
    assert path.read_text() == "old" and file_sha256(path) == hashlib.sha256(b"old").hexdigest()
    described = tmp_path / "sub" / "a.json.meta"
    described.write_text("about old")
    atomic_write(path, b"new", before_replace=described.unlink)
    assert path.read_bytes() == b"new" and not described.exists()

    def refuse():
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, b"newer", before_replace=refuse)
    assert path.read_bytes() == b"new" and [p.name for p in path.parent.iterdir()] == ["a.json"]  # no .partial


def test_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir("plugins") == tmp_path / "rgbir" / "plugins" and cache_dir() == tmp_path / "rgbir"
