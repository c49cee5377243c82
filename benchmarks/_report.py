"""Shared helpers for benchmark scripts: machine description and section-wise updates of
``docs/benchmarks.md`` (each benchmark owns one section between markers, so scripts never clobber
each other's figures)."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

_HEADER = """# Benchmarks

Speed and memory goals are measured here, never in timed unit tests: machines are shared and noisy, so
each section reports ratios measured in one run, on the machine named in the section. Re-run a
benchmark with the command shown in its section (`make bench` runs them all).
"""


def machine() -> str:
    """One line describing this machine and the library versions that matter."""
    import torch

    try:
        import monai

        monai_v = monai.__version__
    except ImportError:  # pragma: no cover
        monai_v = "n/a"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()}, {cores} cores, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, MONAI {monai_v}; {time.strftime('%Y-%m-%d')}"
    )


def write_section(name: str, markdown: str, *, doc: Path = DOC) -> Path:
    """Replace (or append) the section ``name`` of ``docs/benchmarks.md`` with ``markdown``."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = doc.read_text() if doc.exists() else _HEADER
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, doc)
    return doc
