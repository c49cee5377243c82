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
    """One line describing this machine (its CPU model and vector/matrix flags included: timings and bfloat16
    depend on them) and the library versions that matter."""
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
        f"torch {torch.__version__}, MONAI {monai_v}; {time.strftime('%Y-%m-%d')}; {cpu_line()}"
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


def cpu_line() -> str:
    """The CPU model and its vector/matrix flags that matter for inference (``/proc/cpuinfo``)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((x.split(":", 1)[1].strip() for x in text.splitlines() if x.startswith("model name")), "unknown")
    flags = next((x.split(":", 1)[1].split() for x in text.splitlines() if x.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
    return f"CPU: {model}; flags: {', '.join(f for f in wanted if f in flags) or 'none of ' + ', '.join(wanted)}"
