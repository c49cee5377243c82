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
    from medseg.training.loader import load_pipeline

    load_pipeline("liver", device="cpu", overrides=[override])


def _other_tools_commands() -> list[str]:
    text = (ROOT / "docs" / "other-tools.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip().startswith("medseg ")]


def test_other_tools_page_is_linked_and_has_commands():
    assert "docs/other-tools.md" in (ROOT / "README.md").read_text()
    assert len(_other_tools_commands()) >= 8


@pytest.mark.parametrize("command", _other_tools_commands())
def test_other_tools_commands_parse(command):
    """Every command on docs/other-tools.md is accepted by medseg's parser (``--labels`` values included)."""
    import shlex

    from medseg.cli import build_parser
    from medseg.io.label_map import LabelMapping

    args = build_parser().parse_args(shlex.split(command)[1:])
    for option in ("labels", "pred_labels"):
        if getattr(args, option, None):
            LabelMapping.parse(getattr(args, option))
