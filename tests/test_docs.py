"""Every ``--set key=value`` override shown in the README and docs is accepted by the shipped pipelines."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `--set key=value` with a concrete key (placeholders such as section.key=value are skipped)
_SET = re.compile(r"--set\s+([a-z_]+(?:\.[a-z_]+)*=(?:\{[^}]*\}\}?|\[[^\]]*\]|[^\s`)\"]+))")
_PLACEHOLDERS = {"key", "section.key"}


def _documented_overrides() -> list[str]:
    found = set()
    for path in DOCS:
        for item in _SET.findall(path.read_text()):
            key, value = item.split("=", 1)
            if key not in _PLACEHOLDERS and value not in {"N", "N)"}:
                found.add(item)
    return sorted(found)


def test_docs_show_overrides():
    assert len(_documented_overrides()) >= 5


@pytest.mark.parametrize("override", _documented_overrides())
def test_documented_override_is_valid(override):
    from medseg.training.config import load_pipeline

    load_pipeline("liver", device="cpu", overrides=[override])
