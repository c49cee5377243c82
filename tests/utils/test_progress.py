"""Progress bars: shown in a Jupyter kernel and on a terminal, hidden in logs; explicit flags win."""

from __future__ import annotations

import sys
import types

import pytest

from medseg.utils.progress import in_notebook, tqdm_disable


def _fake_ipython(monkeypatch, shell_class_name: str | None):
    module = types.ModuleType("IPython")
    shell = None if shell_class_name is None else type(shell_class_name, (), {})()
    module.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", module)


@pytest.mark.parametrize(("progress", "expected"), [(True, False), (False, True)])
def test_explicit_flag_wins(progress, expected, monkeypatch):
    _fake_ipython(monkeypatch, "ZMQInteractiveShell")
    assert tqdm_disable(progress) is expected


def test_jupyter_kernel_shows_bars(monkeypatch):
    _fake_ipython(monkeypatch, "ZMQInteractiveShell")
    assert in_notebook() and tqdm_disable(None) is False


@pytest.mark.parametrize("shell", [None, "TerminalInteractiveShell"])
def test_elsewhere_tqdm_decides_by_tty(shell, monkeypatch):
    _fake_ipython(monkeypatch, shell)
    assert not in_notebook() and tqdm_disable(None) is None


def test_without_ipython_imported(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert tqdm_disable(None) is None
