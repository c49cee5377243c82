"""When to show a tqdm progress bar: the one rule every long-running step uses.

tqdm's own ``disable=None`` hides a bar when its stream is not a terminal, which hides every bar in a
Jupyter notebook (whose output stream is no TTY). Here ``progress=None`` means: show the bar in a Jupyter
kernel (``tqdm.auto`` renders it as a widget) and on a terminal, hide it in logs and pipes.
"""

from __future__ import annotations

import sys

__all__ = ["in_notebook", "tqdm_disable"]


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter (IPython ZMQ) kernel."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ipython = getattr(shell, "get_ipython", lambda: None)()
    return ipython is not None and type(ipython).__name__ == "ZMQInteractiveShell"


def tqdm_disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable`` argument for a ``progress`` flag (``None``: automatic, see the module docstring)."""
    if progress is not None:
        return not progress
    return False if in_notebook() else None
