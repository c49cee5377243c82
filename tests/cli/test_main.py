"""Every CLI command has --help with an example, and docs/cli.md is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.cli import build_parser, cli_reference, main

COMMANDS = ["phantom", "check", "train", "crossval", "predict", "evaluate", "volumes"]


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
