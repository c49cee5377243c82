"""medseg_cache_dir follows the XDG base-directory rule."""

from __future__ import annotations

from pathlib import Path

from medseg.inference.runtime_cache import default_cache_dir
from medseg.training.prepare import default_cache_root
from medseg.utils.cache_home import medseg_cache_dir


def test_xdg_cache_home_when_absolute_else_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "scratch"))
    assert medseg_cache_dir() == tmp_path / "scratch" / "medseg"
    assert default_cache_root() == tmp_path / "scratch" / "medseg"
    assert default_cache_dir() == tmp_path / "scratch" / "medseg" / "openvino"
    for ignored in ("", "relative/cache"):  # the specification: a relative path is invalid and ignored
        monkeypatch.setenv("XDG_CACHE_HOME", ignored)
        assert medseg_cache_dir() == Path(tmp_path / "home" / ".cache" / "medseg")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "medseg" / "openvino"
