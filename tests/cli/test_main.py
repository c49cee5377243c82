"""Every CLI command has --help with an example, and docs/cli.md is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.cli import build_parser, cli_reference, main

COMMANDS = ["phantom", "check", "sparsify", "train", "crossval", "predict", "evaluate", "volumes", "compare"]


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_all_commands_registered():
    assert sorted(_subparsers()) == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_an_example(name):
    text = _subparsers()[name].format_help()
    assert "example" in text.lower() and f"medseg {name}" in text


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: medseg" in capsys.readouterr().out


def test_docs_cli_reference_is_current():
    doc = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert doc.read_text() == cli_reference(), "regenerate with: python -m medseg.cli --reference > docs/cli.md"


def test_main_leaves_the_environment_as_it_was(monkeypatch):
    """The CLI picks Agg only while it runs: a notebook kernel started later by the same process keeps inline."""
    import os

    monkeypatch.delenv("MPLBACKEND", raising=False)
    seen = {}

    def fake_run(argv):
        seen["backend"] = os.environ.get("MPLBACKEND")
        return 0

    monkeypatch.setattr("medseg.cli._run", fake_run)
    assert main(["check", "nowhere"]) == 0
    assert seen["backend"] == "Agg" and "MPLBACKEND" not in os.environ
    monkeypatch.setenv("MPLBACKEND", "svg")
    assert main(["check", "nowhere"]) == 0 and seen["backend"] == "svg" and os.environ["MPLBACKEND"] == "svg"
